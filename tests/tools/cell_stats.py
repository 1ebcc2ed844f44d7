"""Sizes of the chapters' exported cells: lines that are neither blank nor `#|` directives (comments and docstrings count).

    .venv/bin/python tests/tools/cell_stats.py            # a table per chapter and the totals
    .venv/bin/python tests/tools/cell_stats.py --check    # also fail when the median is over 12 or a cell over 45 (make lint)
"""
import argparse, json, re, statistics, sys
from pathlib import Path

MEDIAN_MAX, CELL_MAX = 12, 45 # the book's shape: small cells, none that hides several definitions
EXPORT = re.compile(r'^#\|\s*export', re.M)


def exported_cell_sizes(nb:Path)->list:
    "(cell id, size) of each exported code cell of notebook `nb`."
    cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
    return [(c.get('id'), sum(1 for ln in ''.join(c['source']).splitlines() if ln.strip() and not ln.lstrip().startswith('#|')))
            for c in cells if c['cell_type'] == 'code' and EXPORT.search(''.join(c['source']))]


def main(argv=None)->int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--nbs', type=Path, default=Path(__file__).resolve().parents[2]/'nbs')
    p.add_argument('--check', action='store_true', help=f'exit 1 when the median is over {MEDIAN_MAX} or a cell over {CELL_MAX} lines')
    a = p.parse_args(argv)
    sizes, big = [], []
    for nb in sorted(a.nbs.glob('[0-9]*.ipynb')):
        s = exported_cell_sizes(nb)
        if not s: continue
        n = [x for _, x in s]
        sizes += n
        big += [f'{nb.name} cell {i}: {x} lines' for i, x in s if x > CELL_MAX]
        print(f'{nb.name:24} cells {len(n):3}  median {statistics.median(n):5.1f}  max {max(n):4}  over {CELL_MAX}: {sum(x > CELL_MAX for x in n)}')
    med = statistics.median(sizes)
    print(f'{"all":24} cells {len(sizes):3}  median {med:5.1f}  max {max(sizes):4}  over {CELL_MAX}: {len(big)}')
    if a.check and (med > MEDIAN_MAX or big):
        print(f'cell_stats: the median must be at most {MEDIAN_MAX} (it is {med}) and no exported cell over {CELL_MAX} lines:', *big, sep='\n  ', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__': sys.exit(main())
