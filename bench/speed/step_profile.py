"""Where a MiniLM training step's time goes on CPU: fp32 vs bf16 autocast, attention dropout 0.1 (BERT's) vs 0 (ours).

    .venv/bin/python bench/speed/step_profile.py [L]     # batch 32 x L tokens (default 80), 2 threads
"""
import os, time, sys
os.environ['HF_HUB_OFFLINE'] = '1'
import torch
from dataclasses import asdict
from bsm_nb.config import BSMConfig
from bsm_nb.model import MultimodalBert, resolve_encoder
torch.set_num_threads(2)
L = int(sys.argv[1]) if len(sys.argv) > 1 else 80
b = {'input_ids': torch.randint(1000, 20000, (32, L)), 'attention_mask': torch.ones(32, L, dtype=torch.long),
     'cat': torch.randint(0, 10, (32, 1)), 'num': torch.randn(32, 2), 'label': torch.randint(0, 2, (32,))}

def profile(attention_dropout, bf16, steps=6):
    "Mean forward / backward / optimizer seconds over `steps` - 1 steps (the first is a warm-up)."
    torch.manual_seed(0)
    cfg = BSMConfig(cat_field_list=['c'], tab_field_list=['x'], attention_dropout=attention_dropout)
    m = MultimodalBert(asdict(cfg), [10], 2, ['0', '1'], encoder_path=resolve_encoder(cfg)); m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-5)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            loss = m.loss(m(b), b['label'])
        t1 = time.perf_counter(); loss.backward()
        t2 = time.perf_counter(); opt.step(); opt.zero_grad(); t3 = time.perf_counter()
        times.append((t1 - t, t2 - t1, t3 - t2))
    return [sum(x[i] for x in times[1:]) / (steps - 1) for i in range(3)]

for drop in (0.1, 0.0):
    for bf16 in (False, True):
        f, bw, o = profile(drop, bf16)
        print(f'{"bf16" if bf16 else "fp32"} attention_dropout={drop}: forward {f:.3f} s, backward {bw:.3f} s, '
              f'optimizer {o:.3f} s, total {f + bw + o:.3f} s')
