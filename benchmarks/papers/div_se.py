"""DIV-SE and IDIV-SE against self-consistency at an equal budget (Naik et al. 2023) on AQuA and Blocksworld.

DIV-SE asks the model for diverse approaches and spends one prompt per
approach (across calls); IDIV-SE puts them in one prompt (within a call);
self-consistency samples one prompt n times. All at about n samples.

    .venv/bin/python benchmarks/papers/div_se.py [--backend SPEC] [--limit 10] [-n 4]
"""

from _paper import compare, options, summary

from manyminds.strategies import make

DATASETS = ("aqua", "blocksworld")

if __name__ == "__main__":
    args = options(__doc__, n=4, max_tokens=256).parse_args()
    rows = []
    settings = dict(temperature=0.7, max_tokens=args.max_tokens, seed=args.seed)
    for dataset in DATASETS:
        methods = {f"self-consistency (n={args.n})": make("self-consistency", args.n, **settings),
                   f"div-se (n={args.n})": make("div-se", args.n, **settings),
                   f"idiv-se (n={args.n})": make("idiv-se", args.n, **{**settings, "max_tokens": args.max_tokens * 2})}
        rows += compare("div_se", dataset, methods, args)
    summary("div_se", "DIV-SE and IDIV-SE against self-consistency at an equal budget", rows, args)
