"""Self-MoA against Mixture-of-Agents (Li et al. 2025; Wang et al. 2024) on MMLU and AlpacaEval.

Self-MoA synthesises n samples of one model; MoA layers proposers (here the
same backend: with one model, MoA's proposers differ only by sampling) and
an aggregator. AlpacaEval is judged pairwise against the GPT-4 reference
outputs by --judge (default: the backend itself, which for a small model
says little).

    .venv/bin/python benchmarks/papers/self_moa.py [--backend SPEC] [--judge SPEC] [--limit 10] [-n 6]
"""

from _paper import compare, options, summary

from manyminds.backends import from_spec
from manyminds.strategies import make

DATASETS = ("mmlu", "alpaca_eval")

if __name__ == "__main__":
    parser = options(__doc__, n=6, max_tokens=192)
    parser.add_argument("--judge", default=None)
    args = parser.parse_args()
    backend = from_spec(args.backend)
    judge = from_spec(args.judge) if args.judge else backend
    rows = []
    settings = dict(temperature=0.7, max_tokens=args.max_tokens, seed=args.seed)
    for dataset in DATASETS:
        methods = {"single sample": make("self-consistency", 1, **settings),
                   f"moa (budget {args.n})": make("moa", args.n, **settings),
                   f"self-moa (n={args.n})": make("self-moa", args.n, **settings)}
        rows += compare("self_moa", dataset, methods, args, backend=backend, judge=judge)
    summary("self_moa", "Self-MoA against Mixture-of-Agents", rows, args,
            notes="AlpacaEval's figure is a win rate against the reference outputs, judged in both orders.")
