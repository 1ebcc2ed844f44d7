"""bsm_nb runs for the benchmark table (project venv), one `bsm-train` process per run.

    .venv/bin/python bench/accuracy/ours_run.py --fusion concat --with-rating [--precision 32-true] [--hp KEY=VALUE ...]
                                                [--out bench/out/ours.jsonl]

Same protocol as the peer (bench/RESULTS.md): first 4,000 train rows, full val and test, the packaged MiniLM, 1 epoch,
batch 32, max length 128, encoder lr 5e-5, 2 threads, seed 42; every other hyperparameter at its default unless given
with --hp. The row's name says the precision the run used (`auto` resolves per machine). The run is the real `train`
program on a SageMaker-layout tree in a temp dir; figures come from its predictions files through bench_metrics.figures,
speeds from its metrics.json (time on training batches, validation excluded as in the peer's runs; prediction time),
peak RSS from the child process.
"""
import time

T0 = time.perf_counter()

import argparse, json, os, resource, subprocess, sys, tempfile
from pathlib import Path
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench/: bench_metrics
from bench_metrics import DATA_DIR, TRAIN_ROWS, figures, write_result

BIN = Path(sys.executable).parent


def write_tree(base: Path, with_rating: bool, fusion: str, precision: str, seed: int,
               extra: dict | None = None) -> Path:
    "Channels with the benchmark's rows (id column named) and hyperparameters as SageMaker sends them."
    for split, nrows in (("train", TRAIN_ROWS), ("val", None), ("test", None)):
        df = pd.read_csv(os.path.join(DATA_DIR, f"{split}.csv"), nrows=nrows).rename(columns={"Unnamed: 0": "row_id"})
        (base / "input/data" / split).mkdir(parents=True)
        df.to_csv(base / "input/data" / split / f"{split}.csv", index=False)
    nums = ["Age", "Positive Feedback Count"] + (["Rating"] if with_rating else [])
    hps = {"id_name": "row_id", "text_name": json.dumps(["Title", "Review Text"]), "label_name": "Recommended IND",
           "cat_field_list": json.dumps(["Division Name", "Department Name", "Class Name"]),
           "tab_field_list": json.dumps(nums),
           "max_epochs": "1", "batch_size": "32", "max_seq_length": "128", "lr": "5e-05", "num_threads": "2",
           "seed": str(seed), "fusion": fusion, "precision": precision, "checkpoint_every_n_steps": "0",
           **(extra or {})}
    (base / "input/config").mkdir(parents=True)
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hps))
    return base


def key_value(s: str) -> tuple:
    "--hp KEY=VALUE as a pair; argparse reports anything else as a bad value."
    k, sep, v = s.partition("=")
    if not (k and sep):
        raise argparse.ArgumentTypeError(f"{s!r} is not KEY=VALUE (a hyperparameter name, '=', its value)")
    return k, v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fusion", default="concat", choices=["concat", "gated", "text_only", "tab_only"])
    ap.add_argument("--with-rating", dest="with_rating", action="store_true")
    ap.add_argument("--without-rating", dest="with_rating", action="store_false")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--hp", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                    help="another hyperparameter (repeatable)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="bench/out/ours.jsonl")
    a = ap.parse_args()
    extra = dict(a.hp)
    with tempfile.TemporaryDirectory(prefix="bsm_bench_") as d:
        base = write_tree(Path(d), a.with_rating, a.fusion, a.precision, a.seed, extra)
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        t = time.perf_counter()
        res = subprocess.run([BIN / "bsm-train"], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if res.returncode != 0:
            sys.exit(f"bsm-train failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        m = json.loads((base / "model/metrics.json").read_text())
        val, test = pd.read_csv(base / "model/predictions_val.csv"), pd.read_csv(base / "model/predictions.csv")
        y = lambda df: (df.true_label.astype(str) == "1").astype(int)
        fig = figures(y(val), val.probability, y(test), test.probability)
    name = f"bsm_nb {a.fusion} · {m.get('precision', a.precision)}" + (" (auto)" if a.precision == "auto" else "")
    if m.get("predict_mode") == "int8": name += ", int8 prediction"  # predict_int8: where prediction would run in fp32
    name += "".join(f", {k} {v}" for k, v in extra.items())
    if "BSM_MMAP_THRESHOLD" in os.environ: name += f", BSM_MMAP_THRESHOLD={os.environ['BSM_MMAP_THRESHOLD']}"
    write_result(a.out, run=name, with_rating=a.with_rating, seed=a.seed, **fig,
                 train_samples_per_s=m["train_samples_per_s"], infer_rows_per_s=m["predict_rows_per_s"],
                 peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024), wall_s=round(wall))


if __name__ == "__main__":
    main()
