"""Where a MiniLM training step goes on CPU: fp32 vs bf16 autocast, batch 32 x L tokens."""
import os, time, sys
os.environ['HF_HUB_OFFLINE'] = '1'
import torch
from dataclasses import asdict
from bsm_nb.config import BSMConfig
from bsm_nb.model import MultimodalBert, resolve_encoder
torch.set_num_threads(2); torch.manual_seed(0)
L = int(sys.argv[1]) if len(sys.argv) > 1 else 80
cfg = BSMConfig(cat_field_list=['c'], tab_field_list=['x'])
m = MultimodalBert(asdict(cfg), [10], 2, ['0', '1'], encoder_path=resolve_encoder(cfg)); m.train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-5)
b = {'input_ids': torch.randint(1000, 20000, (32, L)), 'attention_mask': torch.ones(32, L, dtype=torch.long),
     'cat': torch.randint(0, 10, (32, 1)), 'num': torch.randn(32, 2), 'label': torch.randint(0, 2, (32,))}
def step(bf16):
    t = time.perf_counter()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        loss = m.loss(m(b), b['label'])
    t1 = time.perf_counter(); loss.backward(); t2 = time.perf_counter(); opt.step(); opt.zero_grad(); t3 = time.perf_counter()
    return t1 - t, t2 - t1, t3 - t2
for bf16 in (False, True, False, True):
    r = [step(bf16) for _ in range(6)][1:]
    f, bw, o = (sum(x[i] for x in r) / len(r) for i in range(3))
    print(f'bf16={bf16} L={L}: forward {f:.3f}s backward {bw:.3f}s optimizer {o:.3f}s total {f+bw+o:.3f}s')
