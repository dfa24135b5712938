"""pytest setup shared by the test suite."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # lets tests import the `naive` references however pytest is configured
    sys.path.insert(0, str(TESTS))
