"""The accuracy suite's tables, from bench/results/accuracy/suite.jsonl alone, written into bench/RESULTS.md and
printed.

    .venv/bin/python bench/accuracy/suite/table.py [--results bench/results/accuracy/suite.jsonl]
                                                   [--md bench/RESULTS.md] [--no-write]

One table per data set (bsm_nb default: mean ± sd over seeds, its parts alone from metrics.json's `parts`, any other
bsm_nb run, the four baselines, AutoMM; "not run" where a row kind is missing), then a summary against the goals:
default − best of {its parts, the baselines} ≥ −0.005, default ≥ AutoMM, extra share (trees + calibration + blend
time / network fit time) ≤ 15 %, Women's Clothing default ≥ 0.9566 without Rating and ≥ 0.980 with it. The section
goes between `<!-- suite:begin -->` and `<!-- suite:end -->` (appended at the end when the markers are absent).
When a (data, kind, run, seed) appears more than once, its last row counts.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

SUITE = Path(__file__).resolve().parent
sys.path[:] = [str(SUITE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != SUITE]
from suite.datasets import NAMES, PROTOCOL, RESULTS, TRAIN_CAP  # noqa: E402

BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"
DEFAULT = "bsm_nb default"
BASELINES = ("LightGBM fields", "HGB fields", "TF-IDF+LR text", "TF-IDF+LR text+fields")
MARGIN_GOAL, EXTRA_GOAL = -0.005, 0.15
WOMENS_GOALS = {"womens": 0.9566, "womens-rating": 0.980}  # set on 4,000 train rows, 1 epoch (bench/RESULTS.md)
# bench/accuracy/ensemble_run.py rows: the protocol those goals were set on
EARLIER = SUITE.parents[1] / "results" / "accuracy" / "suite_womens_earlier_protocol.jsonl"
EARLIER_NAMES = {"womens": "womens", "womens-with-rating": "womens-rating"}
COLS = ("run", "seeds", "test AUROC", "test log loss", "test ECE", "val AUROC", "time s", "choices (per seed)")


def load(path: Path) -> list:
    "The rows, the last of each (data, kind, run, seed) kept."
    rows = {}
    for ln in Path(path).read_text().splitlines() if Path(path).is_file() else []:
        if ln.strip():
            r = json.loads(ln)
            rows[(r["data"], r.get("kind"), r["run"], r.get("seed"))] = r
    return list(rows.values())


def mean_sd(xs: list, digits: int = 4) -> str:
    "'m ± sd' (sample sd) of the numbers in xs, 'm' for one, '—' for none."
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


def mean(xs: list):
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None


def fmt(x, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def figures(rows: list, get) -> list:
    "The table cells of rows whose per-split figures `get(row)` gives ({'val': {...}, 'test': {...}})."
    sp = [get(r) or {} for r in rows]
    t = lambda k: [s.get("test", {}).get(k) for s in sp]
    return [mean_sd(t("auroc")), mean_sd(t("loss")), mean_sd(t("ece")),
            mean_sd([s.get("val", {}).get("auroc") for s in sp])]


def weights_text(ens: dict) -> str:
    "The ensemble's choice and weights as one short cell."
    w = ens.get("ensemble_weights")
    if w is None and "ensemble_weight" in ens:  # before several parts: the network's weight, the rest the trees'
        w = {"network": ens["ensemble_weight"], "trees": round(1 - ens["ensemble_weight"], 4)}
    ws = ", ".join(f"{k} {v:.2f}" for k, v in (w or {}).items())
    choice = ens.get("choice") or ens.get("ensemble") or ""
    return f"{choice} ({ws})" if ws else choice


def choices(rows: list) -> str:
    cells = []
    for r in sorted(rows, key=lambda r: r["seed"]):
        ens, share = r.get("ensemble", {}), r.get("extra_share")
        extra = f", T {ens['temperature']:.2f}" if isinstance(ens.get("temperature"), (int, float)) else ""
        extra += f", extra {100 * share:.1f} %" if share is not None else ""
        cells.append(f"{r['seed']}: {weights_text(ens)}{extra}")
    return "; ".join(cells)


def row_line(cells: list) -> str:
    return "| " + " | ".join(cells) + " |"


def data_table(name: str, rows: list) -> tuple:
    "(markdown lines of one data set's table, summary facts)."
    mine = [r for r in rows if r["data"] == name]
    out = [f"### {name}", ""]
    if not mine:
        return out + ["not run", ""], {}
    n_train = sorted({r.get("train_rows") for r in mine if r.get("train_rows") is not None})
    cpus = sorted({r["cpu"] for r in mine if r.get("cpu")})
    dates = ", ".join(sorted({r["date"] for r in mine if r.get("date")}))
    out += [f"Train rows {', '.join(map(str, n_train))}; rows from {dates} on {'; '.join(cpus)}.", "",
            row_line(list(COLS)), row_line(["---"] * len(COLS))]
    facts = {"train_rows": n_train}
    bsm = [r for r in mine if r.get("kind") == "bsm"]
    default = [r for r in bsm if r["run"] == DEFAULT]
    seeds = lambda rs: ", ".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))
    if default:
        out.append(row_line([f"**{DEFAULT}**", seeds(default), *[f"**{c}**" if i == 0 else c for i, c in
                    enumerate(figures(default, lambda r: r))], mean_sd([r.get("wall_s") for r in default], 1),
                    choices(default)]))
        facts["default"] = mean([r["test"]["auroc"] for r in default])
        facts["default_txt"] = mean_sd([r["test"]["auroc"] for r in default])
        facts["extra_max"] = max((r["extra_share"] for r in default if r.get("extra_share") is not None), default=None)
        facts["candidates"] = {}
        parts = [p for r in default for p in r.get("parts", {}) if p != "answers"]
        for p in dict.fromkeys(parts):
            have = [r for r in default if p in r.get("parts", {})]
            out.append(row_line([f"bsm_nb {p} alone", seeds(have), *figures(have, lambda r: r["parts"][p]), "—", ""]))
            facts["candidates"][f"{p} (part)"] = mean([r["parts"][p].get("test", {}).get("auroc") for r in have])
    else:
        out.append(row_line([f"**{DEFAULT}**", "not run", *["—"] * 5, ""]))
    for run in dict.fromkeys(r["run"] for r in bsm if r["run"] != DEFAULT):
        rs = [r for r in bsm if r["run"] == run]
        out.append(row_line([run, seeds(rs), *figures(rs, lambda r: r), mean_sd([r.get("wall_s") for r in rs], 1),
                             choices(rs)]))
    for run in BASELINES:
        rs = [r for r in mine if r.get("kind") == "baseline" and r["run"] == run]
        if rs:
            out.append(row_line([run, seeds(rs), *figures(rs, lambda r: r), mean_sd([r.get("wall_s") for r in rs], 1),
                                 ""]))
            facts.setdefault("candidates", {})[run] = mean([r["test"]["auroc"] for r in rs])
        else:
            out.append(row_line([run, "not run", *["—"] * 5, ""]))
    am = [r for r in mine if r.get("kind") == "automm"]
    for run in dict.fromkeys(r["run"] for r in am):
        rs = [r for r in am if r["run"] == run]
        out.append(row_line([run, seeds(rs), *figures(rs, lambda r: r), mean_sd([r.get("wall_s") for r in rs], 1), ""]))
        facts["automm"] = mean([r["test"]["auroc"] for r in rs])
    if not am:
        out.append(row_line(["AutoGluon AutoMM", "not run", *["—"] * 5, ""]))
    return out + [""], facts


def verdict(ok) -> str:
    return "—" if ok is None else ("pass" if ok else "**FAIL**")


def summary(facts: dict) -> list:
    cols = ("data", "default test AUROC", "best of parts + baselines", "margin (goal ≥ −0.005)", "AutoMM",
            "default − AutoMM (goal ≥ 0)", "extra share max (goal ≤ 15 %)", "margin", "vs AutoMM", "extra")
    out = ["### Summary against the goals", "", row_line(list(cols)), row_line(["---"] * len(cols))]
    for name in NAMES:
        f = facts.get(name, {})
        d, cands = f.get("default"), {k: v for k, v in f.get("candidates", {}).items() if v is not None}
        best = max(cands.items(), key=lambda kv: kv[1]) if cands else None
        margin = d - best[1] if d is not None and best else None
        am = f.get("automm")
        vs = d - am if d is not None and am is not None else None
        ex = f.get("extra_max")
        out.append(row_line([name, f.get("default_txt", "not run"), f"{best[1]:.4f} ({best[0]})" if best else "not run",
                             "—" if margin is None else f"{margin:+.4f}", "not run" if am is None else fmt(am),
                             "—" if vs is None else f"{vs:+.4f}", "—" if ex is None else f"{100 * ex:.1f} %",
                             verdict(None if margin is None else margin >= MARGIN_GOAL),
                             verdict(None if vs is None else vs >= 0),
                             verdict(None if ex is None else ex <= EXTRA_GOAL)]))
    out += ["", "Women's Clothing goals (set for the earlier protocol: first 4,000 train rows, 1 epoch):", ""]
    earlier = facts.get("_earlier", {})
    for name, goal in WOMENS_GOALS.items():
        if name in earlier:
            xs = earlier[name]
            out.append(f"- {name}, earlier protocol (`bench/accuracy/ensemble_run.py`, seeds {len(xs)}): default "
                       f"{mean_sd(xs)} vs goal ≥ {goal}: {verdict(statistics.mean(xs) >= goal)}")
        f = facts.get(name, {})
        d = f.get("default")
        rows_note = ""
        if d is not None and f.get("train_rows") != [4000]:  # this protocol's figure: shown, flagged
            n = ", ".join(map(str, f.get("train_rows", [])))
            rows_note = (f" — **flag**: this run's protocol differs (train rows {n}"
                         f", cap {TRAIN_CAP:,}, 2 epochs), so the goal is only indicative here")
        out.append(f"- {name}, this suite's protocol: default {f.get('default_txt', 'not run')} vs goal ≥ {goal}: "
                   f"{verdict(None if d is None else d >= goal)}{rows_note}")
    return out + [""]


def earlier_protocol(path: Path = EARLIER) -> tuple:
    "(markdown lines, name -> the default's test AUROC per seed) of Women's Clothing runs on the earlier protocol."
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    if not rows:
        return [], {}
    out = ["### Women's Clothing on the earlier protocol "
           "(first 4,000 train rows, 1 epoch; `bench/accuracy/ensemble_run.py`)", "",
           f"Rows from {', '.join(sorted({r.get('date', '?') for r in rows}))} "
           f"on {'; '.join(sorted({r['cpu'] for r in rows}))}"
           f", training {', '.join(sorted({r['precision'] for r in rows}))}. "
           "Test AUROC per part (metrics.json's `parts`).", ""]
    parts = list(dict.fromkeys(p for r in rows for p in r["parts_auroc"]))
    cols = ("data", "seeds", *parts, "choices (per seed)")
    out += [row_line(list(cols)), row_line(["---"] * len(cols))]
    got = {}
    for data in dict.fromkeys(r["data"] for r in rows):
        rs = sorted((r for r in rows if r["data"] == data), key=lambda r: r["seed"])
        cells = [mean_sd([r["parts_auroc"][p]["test"] for r in rs if p in r["parts_auroc"]]) for p in parts]
        cells = [f"**{c}**" if p == "answers" else c for p, c in zip(parts, cells)]
        out.append(row_line([data, ", ".join(str(r["seed"]) for r in rs), *cells, choices(rs)]))
        if data in EARLIER_NAMES:
            got[EARLIER_NAMES[data]] = [r["parts_auroc"]["answers"]["test"] for r in rs]
    return out + [""], got


def alternatives(rows: list) -> list:
    "Each non-default bsm_nb run against the default of the same data set and seed, judged on val AUROC only."
    bsm = [r for r in rows if r.get("kind") == "bsm"]
    default = {(r["data"], r["seed"]): r for r in bsm if r["run"] == DEFAULT}
    runs = list(dict.fromkeys(r["run"] for r in bsm if r["run"] != DEFAULT))
    if not runs:
        return []
    cols = ("run", "data", "seed", "answers val AUROC: default → run", "network val AUROC: default → run",
            "better on val", "test AUROC: default → run (not used)")
    out = ["### Small-data defaults of the network, judged on val", "", row_line(list(cols)),
           row_line(["---"] * len(cols))]
    for run in runs:
        wins, n = 0, 0
        for r in sorted((r for r in bsm if r["run"] == run), key=lambda r: (NAMES.index(r["data"]), r["seed"])):
            d = default.get((r["data"], r["seed"]))
            if d is None:
                continue
            net = lambda x: x.get("parts", {}).get("network", {}).get("val", {}).get("auroc")
            better = r["val"]["auroc"] > d["val"]["auroc"]
            wins, n = wins + better, n + 1
            out.append(row_line([run, r["data"], str(r["seed"]), f"{d['val']['auroc']:.4f} → {r['val']['auroc']:.4f}",
                                 f"{fmt(net(d))} → {fmt(net(r))}", "yes" if better else "no",
                                 f"{d['test']['auroc']:.4f} → {r['test']['auroc']:.4f}"]))
        out += ["", f"- {run}: better answers on val on {wins} of {n} data set runs.", ""] if n else [""]
    return out


def section(rows: list) -> str:
    lines = [BEGIN, "## Accuracy suite: six data sets (`bench/accuracy/suite/`)", "",
             "`bash bench/accuracy/run_suite.sh` (baselines, bsm_nb default × seeds 42 43 44, AutoMM, "
             "then this section: "
             "`.venv/bin/python bench/accuracy/suite/table.py` rebuilds it from `bench/results/accuracy/suite.jsonl` "
             "alone).", "",
             f"Protocol: {PROTOCOL}. AutoMM: same rows, val as tuning_data, same encoder, 2 epochs, lr 5e-5, "
             "batch 32, max text length 128, its other defaults (bench/accuracy/suite/automm.py). "
             "Baselines: one seed (42), "
             "recipes in bench/accuracy/suite/baselines.py. On disaster_tweets AutoMM ran on the text alone: its "
             "`data.categorical.minimum_cat_count` (100) left neither categorical field a level on 2,000 rows; on "
             "wine_reviews_5k it kept three.", "",
             "Figures, all from predicted probabilities by bench/accuracy/suite/scoring.py (bsm_nb's own functions): "
             "AUROC "
             "(binary: the positive class; multiclass: macro one-vs-rest), log loss (mean −log p of the true class), "
             "ECE (15 equal-width bins; multiclass: top probability vs accuracy). bsm_nb default: mean ± sd over "
             "seeds; its part rows are metrics.json's `parts` (the network calibrated by the temperature). time s = "
             "the run's wall time (bsm_nb: the bsm-train process; AutoMM: its whole process; baselines: data to "
             "test probabilities). Choices: the ensemble's choice and weights per seed, the temperature T and the "
             "extra share (trees + calibration + blend time / network fit time). "
             "The `head_lr=0.001` rows (the default "
             "before this suite, run with `hp` {} then) partly ran beside the AutoMM runs: "
             "compare times only among the "
             "default's rows, which ran one after another on a nearly quiet machine.", ""]
    facts = {}
    for name in NAMES:
        t, facts[name] = data_table(name, rows)
        lines += t
    earlier, facts["_earlier"] = earlier_protocol()
    lines += summary(facts)
    lines += earlier
    lines += alternatives(rows)
    return "\n".join(lines + [END])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--md", default=str(SUITE.parents[1] / "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true", help="print the section only")
    a = ap.parse_args()
    text = section(load(Path(a.results)))
    if not a.no_write:
        md = Path(a.md)
        old = md.read_text() if md.is_file() else ""
        if BEGIN in old and END in old:
            new = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END):]
        else:
            new = old.rstrip("\n") + "\n\n" + text + "\n"
        md.write_text(new)
    print(text)


if __name__ == "__main__":
    main()
