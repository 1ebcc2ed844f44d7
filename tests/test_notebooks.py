"""The chapters as files: what GitHub shows of them without running anything."""
import json
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1]/'nbs'
CHAPTERS = sorted(NBS.glob('[0-9]*.ipynb')) + [NBS/'index.ipynb']
SHOWN = ('execute_result', 'display_data')


def stored(nb:Path)->list:
    "Ids of the code cells of `nb` that store a shown value (a result, a table, a plot)."
    cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
    return [c['id'] for c in cells if c['cell_type'] == 'code'
            and any(o['output_type'] in SHOWN for o in c.get('outputs', []))]


@pytest.mark.parametrize('nb', CHAPTERS, ids=lambda p: p.stem)
def test_chapter_stores_the_values_it_shows(nb):
    "Each chapter keeps at least 3 outputs, so that a reader sees values where the code computes them (make outputs)."
    assert len(stored(nb)) >= 3, \
        f'{nb.name} stores {len(stored(nb))} shown values; expected at least 3 (make outputs ONLY={nb.stem})'


@pytest.mark.parametrize('nb', CHAPTERS, ids=lambda p: p.stem)
def test_stored_outputs_are_small_and_machine_free(nb):
    "A stored output is a short value: no temporary paths, no tracebacks, nothing of more than 60 lines of text."
    for c in json.loads(nb.read_text(encoding='utf-8'))['cells']:
        for o in c.get('outputs', []):
            assert o['output_type'] in SHOWN, \
                f'{nb.name} cell {c["id"]}: stores a {o["output_type"]} output (only values are stored)'
            text = ''.join(o.get('data', {}).get('text/plain', ''))
            assert '/tmp/tmp' not in text, f'{nb.name} cell {c["id"]}: a temporary path is stored: {text[:200]}'
            assert text.count('\n') <= 60, f'{nb.name} cell {c["id"]}: {text.count(chr(10))} lines of text stored'
