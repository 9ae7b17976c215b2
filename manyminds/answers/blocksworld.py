"""Blocksworld plans checked by simulation against the PDDL problem (PlanBench).

Any plan that reaches the goal is correct, not only the reference one: the
plan's actions are applied one by one to the problem's initial state, each
checked against its preconditions (the 4-operator STRIPS domain shipped with
PlanBench: pick-up, put-down, stack, unstack), and the final state must
satisfy the goal. An invalid plan is reported with the step that failed and
why. Plans are read from PlanBench's natural wording ("unstack the blue
block from on top of the orange block") or from PDDL actions ("(unstack b c)").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COLOURS = {
    "a": "red", "b": "blue", "c": "orange", "d": "yellow", "e": "white", "f": "magenta",
    "g": "black", "h": "cyan", "i": "green", "j": "violet", "k": "silver", "l": "gold",
}
"""PlanBench's names for the PDDL objects: object `a` is "the red block"."""
_OBJECT_OF = {colour: letter for letter, colour in COLOURS.items()}

Fact = tuple[str, ...]
Action = tuple[str, ...]


@dataclass(frozen=True)
class Problem:
    objects: tuple[str, ...]
    init: frozenset[Fact]
    goal: frozenset[Fact]


@dataclass(frozen=True)
class PlanCheck:
    valid: bool
    """The plan runs and ends in a goal state."""
    detail: str
    """Why not (the failing step and its unmet precondition), or a summary."""
    steps: int


def _facts(text: str) -> frozenset[Fact]:
    return frozenset(tuple(m.split()) for m in re.findall(r"\(([a-z-]+(?: [a-z0-9-]+)*)\)", text)
                     if m.split()[0] not in ("and",))


def parse_problem(pddl: str) -> Problem:
    """The objects, initial state and goal of a PlanBench Blocksworld problem file."""
    text = pddl.lower()
    objects = re.search(r"\(:objects([^)]*)\)", text)
    init = re.search(r"\(:init(.*?)\)\s*\(:goal", text, re.S)
    goal = re.search(r"\(:goal(.*)", text, re.S)
    if not (objects and init and goal):
        raise ValueError("not a Blocksworld PDDL problem: it needs :objects, :init and :goal")
    return Problem(tuple(objects.group(1).split()), _facts(init.group(1)), _facts(goal.group(1)))


_BLOCK = r"(?:the\s+)?([a-z]+)(?:\s+block)?"
_WORDED = [
    ("unstack", re.compile(rf"unstack\s+{_BLOCK}\s+from(?:\s+on)?(?:\s+top)?(?:\s+of)?\s+{_BLOCK}")),
    ("stack", re.compile(rf"stack\s+{_BLOCK}\s+(?:on\s+top\s+of|onto|on)\s+{_BLOCK}")),
    ("pick-up", re.compile(rf"pick\s*-?\s*up\s+{_BLOCK}")),
    ("put-down", re.compile(rf"put\s*-?\s*down\s+{_BLOCK}")),
]


def parse_plan(text: str) -> list[Action]:
    """The actions of a plan, in order, with PDDL object names. Stops at "[PLAN END]"."""
    text = text.lower().split("[plan end]")[0]
    actions: list[Action] = []
    for line in text.splitlines():
        line = line.strip().strip("*-•.").strip()
        line = re.sub(r"^(?:step\s*)?\d+[.):]\s*", "", line)
        if not line:
            continue
        pddl = re.findall(r"\(\s*([a-z-]+)((?:\s+[a-z]+)*)\s*\)", line)
        if pddl and re.fullmatch(r"(?:\(\s*[a-z-]+(?:\s+[a-z]+)*\s*\)\s*)+", line):
            actions.extend((name, *(_OBJECT_OF.get(a, a) for a in args.split())) for name, args in pddl)
            continue
        for name, pattern in _WORDED:
            match = pattern.search(line)
            if match:
                actions.append((name, *(_OBJECT_OF.get(a, a) for a in match.groups())))
                break
    return actions


def _name(obj: str) -> str:
    return f"the {COLOURS[obj]} block" if obj in COLOURS else obj


def _apply(state: set[Fact], action: Action, objects: tuple[str, ...]) -> str | None:
    """Apply `action` to `state` in place; the unmet precondition if it cannot run."""
    name, *args = action
    arity = {"pick-up": 1, "put-down": 1, "stack": 2, "unstack": 2}
    if name not in arity:
        return f"unknown action {name!r}"
    if len(args) != arity[name]:
        return f"{name} takes {arity[name]} block(s), got {len(args)}"
    for obj in args:
        if obj not in objects:
            return f"there is no {_name(obj)}"
    need: list[Fact]
    add: list[Fact]
    remove: list[Fact]
    if name == "pick-up":
        (x,) = args
        need, add, remove = [("clear", x), ("ontable", x), ("handempty",)], [("holding", x)], \
            [("clear", x), ("ontable", x), ("handempty",)]
    elif name == "put-down":
        (x,) = args
        need, add, remove = [("holding", x)], [("clear", x), ("handempty",), ("ontable", x)], [("holding", x)]
    elif name == "stack":
        x, y = args
        need, add, remove = [("clear", y), ("holding", x)], [("handempty",), ("clear", x), ("on", x, y)], \
            [("clear", y), ("holding", x)]
    else:
        x, y = args
        need, add, remove = [("on", x, y), ("clear", x), ("handempty",)], [("holding", x), ("clear", y)], \
            [("on", x, y), ("clear", x), ("handempty",)]
    for fact in need:
        if fact not in state:
            return "needs " + _describe(fact)
    state.difference_update(remove)
    state.update(add)
    return None


def _describe(fact: Fact) -> str:
    name, *args = fact
    if name == "handempty":
        return "the hand to be empty"
    if name == "on":
        return f"{_name(args[0])} on top of {_name(args[1])}"
    return {"clear": "{} to be clear", "ontable": "{} on the table", "holding": "holding {}"}[name].format(
        _name(args[0]))


def check_plan(problem: Problem, plan: list[Action]) -> PlanCheck:
    """Simulate `plan` from the initial state: valid when every step can run and the goal holds."""
    if not plan:
        return PlanCheck(False, "no plan: no action could be read", 0)
    state = set(problem.init)
    for step, action in enumerate(plan, 1):
        failure = _apply(state, action, problem.objects)
        if failure:
            return PlanCheck(False, f"step {step} ({' '.join(action)}) cannot run: {failure}", step - 1)
    missing = [f for f in problem.goal if f not in state]
    if missing:
        return PlanCheck(False, f"after {len(plan)} steps the goal is not reached: needs "
                         + ", ".join(_describe(f) for f in sorted(missing)), len(plan))
    return PlanCheck(True, f"valid plan of {len(plan)} steps", len(plan))
