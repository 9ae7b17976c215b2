"""Verifiers: unit tests in a sandbox, math checks, LLM judges and panels, reward models."""

from manyminds.verifiers.base import Verdict, Verifier
from manyminds.verifiers.composite import Combined, all_of, any_of, panel, reward_ensemble, weighted
from manyminds.verifiers.judge import GradeJudge, PTrueJudge
from manyminds.verifiers.math_answer import MathAnswer
from manyminds.verifiers.reward import RewardEndpoint
from manyminds.verifiers.sandbox import Limits, allow_code_execution, run_python
from manyminds.verifiers.unit_tests import UnitTests

__all__ = [
    "Combined", "GradeJudge", "Limits", "MathAnswer", "PTrueJudge", "RewardEndpoint", "UnitTests",
    "Verdict", "Verifier", "all_of", "allow_code_execution", "any_of", "panel", "reward_ensemble", "run_python",
    "weighted",
]
