"""`make docs`: the book without Quarto.
Every chapter of nbs/ is executed on its tiny data, as `nbdev_test` runs it, and rendered with nbconvert to one static
HTML page, with no script; the front page (nbs/index.ipynb) becomes index.html, and every page gets the same sidebar of
chapters with previous / next links. Nothing is fetched from the network: plots are inlined as PNG, and nbconvert's
scripts (MathJax, require.js, mermaid from a CDN) are left out.

    .venv/bin/python tests/tools/build_book.py [--out _docs] [--only 04_model,07_artifacts] [--workers 2] [--store]

Stored outputs: the cells that show a value (visible cells that are not `#| export`) keep their outputs in the
notebook, so that GitHub and the book show them. `--store` writes the fresh outputs of those cells into the notebooks
it builds; without it, the build fails where a stored output differs from what the cell now gives, so a stored output
cannot go stale. What is stored is the value a cell shows (its result, a displayed table or plot), not what it prints or
logs (timestamps, temporary paths). Compared are the kinds and the text, with numbers masked (a fit on a CPU with bf16
gives other digits than one without) and images by kind, not by pixel.

What a reader of the book sees differs from the notebook in three ways, all for reading: `#| hide` cells run but are not
shown, `#|` directive lines are dropped from the code, and what cells wrote to stderr (warnings, progress bars) is left
out. Cells marked `#| eval: false` (they call AWS) are shown, not run. A chapter that fails stops the build, naming the
chapter and the cell.
"""
from __future__ import annotations
import argparse, html, json, os, re, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[2]
NBS = ROOT/'nbs'
DIRECTIVE = re.compile(r'^\s*#\|\s*(.*)$')
CELL_TIMEOUT_S = 900 # a chapter's longest cell trains a tiny model end to end


def directives(src:str)->list:
    "The `#|` directives of a cell's source, as written after the bar (`export`, `hide`, `eval: false`)."
    return [m.group(1).strip() for m in map(DIRECTIVE.match, src.splitlines()) if m]


def chapters(nbs:Path=NBS)->list:
    "The book's pages in reading order: the front page, then the numbered chapters."
    return [nbs/'index.ipynb'] + sorted(nbs.glob('[0-9]*.ipynb'))


def title(nb)->str:
    "The chapter's title: its first markdown heading."
    for c in nb.cells:
        if c.cell_type == 'markdown' and (m := re.search(r'^#\s+(.+)$', c.source, re.M)): return m.group(1).strip()
    return 'untitled'


def execute(path:Path)->nbformat.NotebookNode:
    "`path` executed in a fresh kernel in nbs/, skipping `#| eval: false` cells; raises naming the chapter on an error."
    nb = nbformat.read(path, as_version=4)
    skipped = [c for c in nb.cells if c.cell_type == 'code'
               and any(d.replace(' ', '') == 'eval:false' for d in directives(c.source))]
    for c in skipped: c.cell_type, c.metadata['book_code'] = 'raw', True # raw cells are not run; shown as code below
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name='python3',
                            resources={'metadata': {'path': str(path.parent)}})
    try: client.execute()
    except CellExecutionError as e:
        raise RuntimeError(f'{path.name}: a cell failed while building the book:\n{e}') from None
    for c in skipped: c.cell_type = 'code'; c.outputs, c.execution_count = [], None
    return nb


def for_reading(nb)->nbformat.NotebookNode:
    "The executed notebook as the book shows it: hidden cells out, directives out, stderr out."
    cells = []
    for c in nb.cells:
        if c.cell_type == 'code':
            ds = directives(c.source)
            if 'hide' in ds: continue
            c.source = '\n'.join(ln for ln in c.source.splitlines() if not DIRECTIVE.match(ln)).strip('\n')
            c.outputs = [o for o in c.get('outputs', []) if not (o.output_type == 'stream' and o.name == 'stderr')]
            if not c.source: continue
        cells.append(c)
    nb.cells = cells
    return nb


SHOWN = ('execute_result', 'display_data') # the outputs a notebook stores

def shows(c)->bool:
    "Whether code cell `c` is one whose outputs the notebook stores: visible, not exported, run."
    ds = [d.replace(' ', '') for d in directives(c['source'] if isinstance(c['source'], str) else ''.join(c['source']))]
    return c['cell_type'] == 'code' and not {'hide', 'export', 'exports', 'eval:false'} & set(ds)


def cleaned(nb:dict)->dict:
    "`nb` as `nbdev_clean` leaves it (no counts, no metadata, no ids in reprs), with only the values cells show."
    from nbdev.clean import clean_nb
    nb = json.loads(json.dumps(nb))
    for c in nb['cells']:
        if c['cell_type'] == 'code': c['outputs'] = [o for o in c['outputs'] if o['output_type'] in SHOWN]
    clean_nb(nb)
    return nb


NUMBER = re.compile(r'[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?')

INLINE_IMAGE = re.compile(r'data:image/[a-z]+;base64,[A-Za-z0-9+/=]+') # a plot inside an HTML report

def _digest(outputs:list)->list:
    "What is compared of outputs: their kind and text with numbers masked; images (inline ones too) by type only."
    def text(v): return NUMBER.sub('#', INLINE_IMAGE.sub('image', ''.join(v)))
    return [(o['output_type'],
             tuple(sorted((k, text(v) if k.startswith('text') else 'image') for k, v in o.get('data', {}).items())))
            for o in outputs]


def stored_outputs(path:Path, executed, store:bool=False)->list:
    "Compare (or with `store`, write) the outputs `path` stores with those of `executed`; the cells that differ."
    src, fresh = json.loads(path.read_text(encoding='utf-8')), {c['id']: c for c in cleaned(executed)['cells']}
    stale = []
    for c in src['cells']:
        if c['cell_type'] != 'code' or c.get('id') not in fresh: continue
        new = fresh[c['id']]['outputs'] if shows(c) else []
        if store: c['outputs'] = new
        elif c.get('outputs') and _digest(c['outputs']) != _digest(new): stale.append(c['id'])
    if store: path.write_text(json.dumps(src, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    return stale


def exporter()->HTMLExporter:
    "nbconvert's lab page with no prompts and no links off this machine."
    e = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)
    # nothing to fetch; render drops the tags too
    e.mathjax_url = e.require_js_url = e.jquery_url = e.widget_renderer_url = ''
    return e


NAV_CSS = """<link rel="icon" href="data:,">
<style>
body { margin-left: 17rem; }
nav.book { position: fixed; top: 0; left: 0; bottom: 0; width: 15.5rem; overflow-y: auto; padding: 1rem;
           background: #f6f8fa; border-right: 1px solid #d0d7de; font: 14px/1.5 system-ui, sans-serif; }
nav.book a { display: block; padding: .15rem .3rem; color: #0969da; text-decoration: none; border-radius: 4px; }
nav.book a.current { background: #0969da; color: #fff; }
nav.book h2 { font-size: 15px; margin: 0 0 .6rem; }
div.pager { display: flex; justify-content: space-between; margin: 2rem 1rem; font: 14px system-ui, sans-serif; }
</style>"""


def nav(pages:list, i:int)->tuple:
    "The sidebar (every page, the current one marked) and the previous / next links of page `i`."
    links = ''.join(f'<a href="{html.escape(name)}"{" class=current" if j == i else ""}>{html.escape(t)}</a>'
                    for j, (name, t) in enumerate(pages))
    side = f'<nav class="book"><h2><a href="index.html">bsm_nb</a></h2>{links}</nav>'
    prev = f'<a rel="prev" href="{pages[i-1][0]}">&larr; {html.escape(pages[i-1][1])}</a>' if i > 0 else '<span></span>'
    nxt = (f'<a rel="next" href="{pages[i+1][0]}">{html.escape(pages[i+1][1])} &rarr;</a>' if i + 1 < len(pages)
           else '<span></span>')
    return side, f'<div class="pager">{prev}{nxt}</div>'


def page_name(path:Path)->str: return 'index.html' if path.stem == 'index' else f'{path.stem}.html'


def render(nb, pages:list, i:int)->str:
    "One page of the book: nbconvert's HTML with the sidebar and pager added."
    body, _ = exporter().from_notebook_node(nb, resources={'metadata': {'name': pages[i][1]}})
    side, pager = nav(pages, i)
    # MathJax, require.js, mermaid: a static book runs no script
    body = re.sub(r'<script\b[^>]*>.*?</script>', '', body, flags=re.S)
    body = re.sub(r'href="([^":/]+)\.ipynb(#[^"]*)?"', r'href="\1.html\2"', body) # links between chapters
    body = body.replace('</head>', NAV_CSS + '\n</head>', 1)
    body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + side, body, count=1)
    body = body.replace('</body>', pager + '\n</body>', 1)
    # what a browser would fetch (scripts, images, stylesheets) must be in the page;
    # links a reader follows may go anywhere
    if m := re.search(r'''(?:\bsrc=|<link\b[^>]*\bhref=)["'](https?:)?//[^"']+''', body):
        raise RuntimeError(f'{pages[i][0]}: loads from off this machine: {m.group(0)}')
    return body


def build(out:Path, only:list|None=None, workers:int=2, store:bool=False)->list:
    "Execute and render the book into `out`, checking (or with `store`, writing) stored outputs; the pages written."
    paths = chapters()
    if only: paths = [p for p in paths if p.stem == 'index' or any(p.stem.startswith(o) for o in only)]
    os.environ.setdefault('IN_TEST', '1') # the chapters keep their data tiny, as under nbdev_test
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    os.environ.setdefault('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
    t0 = time.time()
    def run(p):
        t = time.time(); nb = execute(p); print(f'book: {p.name} executed in {time.time() - t:.0f} s', flush=True)
        return nb
    with ThreadPoolExecutor(max(1, workers)) as pool: executed = list(pool.map(run, paths))
    # with --only, the front page is built, not stored
    mine = lambda p: not only or any(p.stem.startswith(o) for o in only)
    stale = {p.name: ids for p, nb in zip(paths, executed) if (ids := stored_outputs(p, nb, store and mine(p)))}
    if stale: raise RuntimeError(f'stored outputs differ from what the cells now give: {stale}; '
                                 'rerun with --store (make outputs) and commit, if the new outputs are right')
    pages = [(page_name(p), title(nb)) for p, nb in zip(paths, executed)]
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob('*.html'): old.unlink()
    for i, nb in enumerate(executed): (out/pages[i][0]).write_text(render(for_reading(nb), pages, i), encoding='utf-8')
    (out/'book.json').write_text(json.dumps({'pages': [{'file': f, 'title': t} for f, t in pages]}, indent=1) + '\n')
    print(f'book: {len(pages)} pages in {out} ({time.time() - t0:.0f} s)')
    return pages


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', type=Path, default=ROOT/'_docs',
                   help='where the HTML pages go (default _docs, nbdev doc_path)')
    p.add_argument('--only', help='comma-separated chapter prefixes (the front page is always built)')
    p.add_argument('--workers', type=int, default=2, help='chapters executed at once')
    p.add_argument('--store', action='store_true',
                   help='write the fresh outputs of the cells that show a value into the notebooks')
    a = p.parse_args(argv)
    try: build(a.out, a.only.split(',') if a.only else None, a.workers, a.store)
    except RuntimeError as e: sys.exit(f'build_book: {e}')


if __name__ == '__main__': main()
