"""Self-consistency against greedy chain of thought (Wang et al., ICLR 2023) on GSM8K, SVAMP, AQuA, StrategyQA.

Greedy decoding of one chain of thought against a majority vote over n
sampled chains (the paper: 40 samples, temperature 0.5-0.7; here -n).

    .venv/bin/python benchmarks/papers/self_consistency.py [--backend SPEC] [--limit 10] [-n 8]
"""

from _paper import compare, options, summary

from manyminds.strategies import SelfConsistency

DATASETS = ("gsm8k", "svamp", "aqua", "strategyqa")

if __name__ == "__main__":
    args = options(__doc__).parse_args()
    rows = []
    for dataset in DATASETS:
        methods = {"greedy chain of thought": SelfConsistency(n=1, temperature=0.0, max_tokens=args.max_tokens),
                   f"self-consistency (n={args.n})": SelfConsistency(n=args.n, temperature=0.7,
                                                                       max_tokens=args.max_tokens, seed=args.seed)}
        rows += compare("self_consistency", dataset, methods, args)
    summary("self_consistency", "Self-consistency against greedy chain of thought", rows, args)
