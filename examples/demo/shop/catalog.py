import dataclasses
import decimal


@dataclasses.dataclass(frozen=True)
class Item:
    name: str
    price: decimal.Decimal


def load():
    return [Item(name, decimal.Decimal(price)) for name, price in
            (("tea", "3.50"), ("coffee", "4.20"), ("cake", "2.95"))]
