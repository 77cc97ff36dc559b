# tests/suites/ holds the slow real-suite runner (run_suites.py), not tests for the default
# pytest run (tests/run.sh): collect nothing here.
collect_ignore_glob = ["*"]
