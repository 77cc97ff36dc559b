import decimal


def total(items):
    return sum((i.price for i in items), decimal.Decimal(0)).quantize(decimal.Decimal("0.01"))
