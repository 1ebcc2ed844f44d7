"""The markdown tables of bench/RESULTS.md's section "The default model's parts" from
bench/results/accuracy/ensemble.jsonl (committed; bench/accuracy/run_ensemble.sh writes it, bench/make_table.py puts
these tables into RESULTS.md): per data set, each seed's test AUROC of the network, the trees and the answers, the
weight and temperature chosen on val, the time the trees took beside the network's fit; then ECE and Brier before and
after.

    .venv/bin/python bench/accuracy/ensemble_table.py [bench/results/accuracy/ensemble.jsonl]
"""
import json, statistics, sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def mean_sd(xs:list)->str:
    return f"{statistics.mean(xs):.4f}" + (f" ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else "")


def main(path=None):
    rows = [json.loads(ln) for ln in open(path or HERE.parent/"results"/"accuracy"/"ensemble.jsonl") if ln.strip()]
    by = defaultdict(list)
    for r in rows: by[(r["data"], r["cpu"], r["precision"])].append(r)
    out = []
    for (data, cpu, prec), rs in by.items():
        out += [f"#### {data} ({cpu}; training {prec}, prediction {rs[0]['predict_mode']})", "",
                "| seed | network | trees | answers | weight of the network | temperature "
                "| trees + calibration time / network fit |",
                "|---|---|---|---|---|---|---|"]
        for r in sorted(rs, key=lambda r: r["seed"]):
            p, e = r["parts_auroc"], r["ensemble"]
            out.append(f"| {r['seed']} | {p['network']['test']:.4f} | "
                       f"{p.get('trees', {}).get('test', float('nan')):.4f} | "
                       f"**{p['answers']['test']:.4f}** | "
                       f"{e.get('ensemble_weights', {}).get('network', e.get('ensemble_weight', float('nan'))):.2f} | "
                       f"{e['temperature']:.3f} | "
                       f"{100 * r['extra_time_share']:.1f} % |")
        if len(rs) > 1:
            col = lambda part: mean_sd([r["parts_auroc"][part]["test"] for r in rs if part in r["parts_auroc"]])
            out.append(f"| mean | {col('network')} | {col('trees')} | **{col('answers')}** | | | |")
        out += ["", "| seed | split | ECE before → after | Brier before → after |", "|---|---|---|---|"]
        for r in sorted(rs, key=lambda r: r["seed"]):
            for k in ("val", "test"):
                c = r["calibration"][k]
                out.append(f"| {r['seed']} | {k} | {c['ece_before']:.4f} → {c['ece_after']:.4f} | "
                           f"{c['brier_before']:.4f} → {c['brier_after']:.4f} |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__": main(*sys.argv[1:])
