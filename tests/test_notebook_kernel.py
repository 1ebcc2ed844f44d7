"""Notebooks run top to bottom in a real Jupyter kernel (this venv's `python3`), as a reader runs them, not only through
`nbdev_test`'s in-process executor. The executed notebook stays in memory; nothing is written back to nbs/."""
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')

NBS = Path(__file__).resolve().parents[1]/'nbs'
PROBE = 'import sys; print("KERNEL_PYTHON=" + sys.executable)'


@pytest.mark.timeout(900)
@pytest.mark.parametrize('name', ['03_data.ipynb', '13_entrypoint.ipynb', '16_tour.ipynb'])
def test_notebook_runs_in_a_jupyter_kernel(name, monkeypatch):
    """Every cell runs without an error output in a python3 kernel started from this venv, with cwd nbs/
    (13_entrypoint trains a tiny model end to end through `main`, 16_tour through `BSMClassifier.fit`, which shows
    Lightning's progress bar in a kernel). The executed copy is never saved."""
    monkeypatch.setenv('HF_HUB_OFFLINE', '1'); monkeypatch.setenv('TOKENIZERS_PARALLELISM', 'false')
    path = NBS/name
    nb = nbformat.read(path, as_version=4)
    n_code = sum(c.cell_type == 'code' for c in nb.cells)
    assert n_code > 3, f'{name} has only {n_code} code cells'
    # cells marked `#| eval: false` (AWS calls) are shown, not run, as under nbdev_test
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'code' and '#| eval: false' in c.source)]
    nb.cells.insert(0, nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name='python3', resources={'metadata': {'path': str(NBS)}})
    client.execute() # raises CellExecutionError, naming the cell, on the first error
    outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
    errors = [o for o in outputs if o.get('output_type') == 'error']
    assert not errors, [(e.get('ename'), e.get('evalue')) for e in errors]
    probe = ''.join(o.get('text', '') for o in nb.cells[0].outputs)
    assert f'KERNEL_PYTHON={sys.executable}' in probe or \
        Path(probe.strip().split('=', 1)[-1]).resolve().parent == Path(sys.executable).resolve().parent, probe
    assert all(c.get('execution_count') for c in nb.cells if c.cell_type == 'code'), 'a code cell did not run'
    if name == '16_tour.ipynb': # a kernel gets the progress bar; train's log lines come too
        fit = next(c for c in nb.cells if c.cell_type == 'code' and '.fit(' in c.source)
        streams = ''.join(o.get('text', '') for o in fit.outputs if o.get('output_type') == 'stream')
        assert 'Epoch 0' in streams and 'it/s' in streams, streams[-2000:]
        assert any(ln.startswith('final ') for ln in streams.splitlines()), streams[-2000:]
        shown = [o for o in fit.outputs if o.get('output_type') == 'execute_result']
        assert shown and '<img src="data:image/png;base64,' in shown[0]['data'].get('text/html', ''), 'no report'
