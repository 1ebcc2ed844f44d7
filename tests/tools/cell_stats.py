"""Sizes of the chapters' exported cells and of their other code cells (tests, demos), in lines that are neither blank
nor `#|` directives (comments and docstrings count); for the other cells also how many are hidden, run past
10 lines, or join statements with `;`.

    .venv/bin/python tests/tools/cell_stats.py            # a table per chapter and the totals
    .venv/bin/python tests/tools/cell_stats.py --check    # also fail when the median is over 12 or a cell over 45
                                                          # (make lint)
"""
import argparse, json, re, statistics, sys
from pathlib import Path

MEDIAN_MAX, CELL_MAX = 12, 45 # the book's shape: small cells, none that hides several definitions
EXPORT = re.compile(r'^#\|\s*export', re.M)


def exported_cell_sizes(nb:Path)->list:
    "(cell id, size) of each exported code cell of notebook `nb`."
    cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
    return [(c.get('id'),
             sum(1 for ln in ''.join(c['source']).splitlines() if ln.strip() and not ln.lstrip().startswith('#|')))
            for c in cells if c['cell_type'] == 'code' and EXPORT.search(''.join(c['source']))]


LONG_TEST = 10 # a test or demo cell longer than this is split or hidden
JOINED = re.compile(r';\s*\S') # two statements on one line (a `;` that ends a line, or is in a string, also counts)


def other_cells(nb:Path)->list:
    "(size, hidden, joined) of each code cell of `nb` that is not exported: the tests and the demos."
    cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
    out = []
    for c in cells:
        src = ''.join(c['source'])
        if c['cell_type'] != 'code' or EXPORT.search(src): continue
        lines = [ln for ln in src.splitlines() if ln.strip() and not ln.lstrip().startswith('#|')]
        out.append((len(lines), bool(re.search(r'^#\|\s*hide', src, re.M)),
                    sum(bool(JOINED.search(ln)) for ln in lines)))
    return out


def main(argv=None)->int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--nbs', type=Path, default=Path(__file__).resolve().parents[2]/'nbs')
    p.add_argument('--check', action='store_true',
                   help=f'exit 1 when the median is over {MEDIAN_MAX} or a cell over {CELL_MAX} lines')
    a = p.parse_args(argv)
    sizes, big = [], []
    for nb in sorted(a.nbs.glob('[0-9]*.ipynb')):
        s = exported_cell_sizes(nb)
        if not s: continue
        n = [x for _, x in s]
        sizes += n
        big += [f'{nb.name} cell {i}: {x} lines' for i, x in s if x > CELL_MAX]
        o = other_cells(nb)
        tests = (f'  | other cells {len(o):3} (hidden {sum(h for _, h, _ in o):3})  over {LONG_TEST}: '
                 f'{sum(x > LONG_TEST for x, _, _ in o):3}'
                 f'  lines with `;`: {sum(j for _, _, j in o):3}') if o else ''
        print(f'{nb.name:24} cells {len(n):3}  median {statistics.median(n):5.1f}  max {max(n):4}  over {CELL_MAX}: '
              f'{sum(x > CELL_MAX for x in n)}{tests}')
    med = statistics.median(sizes)
    print(f'{"all":24} cells {len(sizes):3}  median {med:5.1f}  max {max(sizes):4}  over {CELL_MAX}: {len(big)}')
    if a.check and (med > MEDIAN_MAX or big):
        print(f'cell_stats: the median must be at most {MEDIAN_MAX} (it is {med}) and no exported cell over {CELL_MAX} '
              'lines:', *big, sep='\n  ', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__': sys.exit(main())
