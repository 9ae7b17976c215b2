"""Public reasoning benchmarks shipped with the package, as Tasks with gold answers and scorers.

    import manyminds as mm
    mm.datasets.names()                         # ['gsm8k', 'math500', ...]
    tasks = mm.datasets.load("gsm8k", limit=50, seed=0)
    mm.datasets.get("gsm8k").scorer             # 'answer'

A user's own file: `mm.datasets.from_file(path, question_field=..., answer_field=...)`.
"""

from manyminds.datasets.catalog import DATASETS, Dataset, get, load, names
from manyminds.datasets.reading import DataError
from manyminds.datasets.files import from_file

__all__ = ["DATASETS", "DataError", "Dataset", "from_file", "get", "load", "names"]
