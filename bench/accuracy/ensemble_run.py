"""The parts of bsm_nb's default model on the benchmark protocol (the network, the trees, their blend and its
calibration): one `bsm-train` run per seed and data set, with every default (`ensemble=auto`, `calibrate=true`),
and from its metrics.json the network's, the trees' and the answers' test AUROC, the blend weight and temperature
chosen on val, ECE and Brier before and after calibration, and the time the trees, temperature and weight took
beside the network's fit.

    .venv/bin/python bench/accuracy/ensemble_run.py --data womens [--with-rating] --seed 42 [--hp KEY=VALUE ...]
                                                    [--out bench/out/ensemble.jsonl]
    .venv/bin/python bench/accuracy/ensemble_run.py --data womens-multiclass --seed 42
        # label: Rating 1-5, Rating not a feature
    .venv/bin/python bench/accuracy/ensemble_run.py --data synthetic --seed 42
        # bsm_nb.synthetic, 2,000 / 400 / 400 rows

Women's Clothing: the protocol of bench/RESULTS.md (first 4,000 train rows, full val and test, the packaged MiniLM,
1 epoch, batch 32, max length 128, lr 5e-5, 2 threads). One JSON line per run; the figures are metrics.json's own.
"""
import argparse, json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path

import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench/: bench_metrics
from bench_metrics import DATA_DIR, TRAIN_ROWS, cpu_label
from ours_run import key_value, write_tree

BIN = Path(sys.executable).parent


def multiclass_tree(base:Path, seed:int, extra:dict)->Path:
    "Women's Clothing with `Rating` (1-5) as the label and neither Rating nor Recommended IND as a feature."
    for split, nrows in (("train", TRAIN_ROWS), ("val", None), ("test", None)):
        df = pd.read_csv(os.path.join(DATA_DIR, f"{split}.csv"), nrows=nrows).rename(columns={"Unnamed: 0": "row_id"})
        (base/"input/data"/split).mkdir(parents=True)
        df.drop(columns=["Recommended IND"]).to_csv(base/"input/data"/split/f"{split}.csv", index=False)
    hps = {"id_name": "row_id", "text_name": json.dumps(["Title", "Review Text"]), "label_name": "Rating",
           "cat_field_list": json.dumps(["Division Name", "Department Name", "Class Name"]),
           "tab_field_list": json.dumps(["Age", "Positive Feedback Count"]), "max_epochs": "1", "batch_size": "32",
           "max_seq_length": "128", "lr": "5e-05", "num_threads": "2", "seed": str(seed),
           "checkpoint_every_n_steps": "0",
           "metric_choices": json.dumps(["auroc", "accuracy"]), **extra}
    (base/"input/config").mkdir(parents=True)
    (base/"input/config/hyperparameters.json").write_text(json.dumps(hps))
    return base


def synthetic_tree(base:Path, seed:int, extra:dict)->Path:
    from bsm_nb.synthetic import write_sagemaker_tree
    return write_sagemaker_tree(base, n_train=2000, n_val=400, n_test=400, seed=seed,
                                hyperparameters={"max_epochs": 1, "num_threads": 2, "seed": seed, **extra})


def row(m:dict, data:str, seed:int, hp:dict, wall_s:float)->dict:
    "The JSON line of one run, from its metrics.json."
    parts = {p: {k: round(s[k]["auroc"], 4) for k in ("val", "test")} for p, s in m["parts"].items()}
    return {"bench": "ensemble", "data": data, "seed": seed, "hp": hp, "cpu": cpu_label(), "precision": m["precision"],
            "predict_mode": m["predict_mode"], "parts_auroc": parts, "test_auroc": round(m["test"]["auroc"], 4),
            "ensemble": m["ensemble"], "calibration": m["calibration"], "fit_s": m["fit_s"], "wall_s": round(wall_s, 1),
            "extra_time_share": round(m["ensemble"]["fit_s"] / m["fit_s"], 4), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d", time.gmtime())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="womens", choices=["womens", "womens-multiclass", "synthetic"])
    ap.add_argument("--with-rating", dest="with_rating", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--hp", action="append", default=[], type=key_value, metavar="KEY=VALUE")
    ap.add_argument("--out", default="bench/out/ensemble.jsonl")
    a = ap.parse_args()
    extra = dict(a.hp)
    name = a.data + ("-with-rating" if a.with_rating and a.data == "womens" else "")
    with tempfile.TemporaryDirectory(prefix="bsm_ens_") as d:
        base = Path(d)/"ml"
        if a.data == "womens": write_tree(base, a.with_rating, "concat", "auto", a.seed, extra)
        elif a.data == "womens-multiclass": multiclass_tree(base, a.seed, extra)
        else: synthetic_tree(base, a.seed, extra)
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        t = time.time()
        r = subprocess.run([str(BIN/"bsm-train")], env=env, capture_output=True, text=True)
        if r.returncode: sys.exit(f"bsm-train failed ({r.returncode}):\n{(r.stdout + r.stderr)[-4000:]}")
        out = row(json.loads((base/"model"/"metrics.json").read_text()), name, a.seed, extra, time.time() - t)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f: f.write(json.dumps(out) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
