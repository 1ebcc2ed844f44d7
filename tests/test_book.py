"""The HTML book (`make docs`, tests/tools/build_book.py) read as a reader reads it: served on loopback
and opened in headless Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium).
Screenshots go to the test's temp dir.

The book is read from `_docs/` (or `BSM_BOOK_DIR`); `make test` builds it first. Run alone:
`make docs && .venv/bin/pytest tests/test_book.py`."""
import functools, json, os, shutil, threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = Path(os.environ.get('BSM_BOOK_DIR', ROOT/'_docs'))
CHROMIUM, CHROMEDRIVER = (shutil.which('chromium') or '/usr/bin/chromium',
                          shutil.which('chromedriver') or '/usr/bin/chromedriver')

if not (BOOK/'index.html').exists(): pytest.skip(f'no book in {BOOK}: run `make docs` first', allow_module_level=True)
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip('headless Chromium is missing: `make chromium` (as root) installs Debian\'s chromium and '
                'chromium-driver', allow_module_level=True)
webdriver = pytest.importorskip('selenium.webdriver', reason='selenium is a dev requirement: make install')


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


@pytest.fixture(scope='module')
def book_url():
    "The book served over HTTP on 127.0.0.1 (a free port), as a reader's browser would fetch it."
    server = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_QuietHandler, directory=str(BOOK)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_port}/'
    server.shutdown()


@pytest.fixture(scope='module')
def browser():
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1400,1000',
              '--no-first-run', '--disable-extensions', '--disable-background-networking'): opts.add_argument(a)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def pages()->list:
    "The book's pages as its builder listed them: (file, title)."
    return [(p['file'], p['title']) for p in json.loads((BOOK/'book.json').read_text())['pages']]


def open_page(drv, url:str, shot:Path)->dict:
    "Open `url`, save a screenshot, and return what a reader would notice: console errors, images, links, headings."
    drv.get_log('browser') # drop what earlier pages logged
    drv.get(url)
    drv.save_screenshot(str(shot))
    info = drv.execute_script("""
        const imgs = [...document.images].map(i => ({src: i.src.slice(0, 60), ok: i.complete && i.naturalWidth > 0}));
        return {imgs, links: [...document.querySelectorAll('a[href]')].filter(a => !a.closest('nav.book, div.pager'))
                                  .map(a => a.getAttribute('href')),
                nav: [...document.querySelectorAll('nav.book a')].map(a => a.getAttribute('href')),
                h1: [...document.querySelectorAll('h1')].map(h => h.textContent.replace('¶', '').trim()),
                text: document.body.innerText.length,
                tables: [...document.querySelectorAll('.jp-OutputArea table')].map(t => t.innerText.slice(0, 200)),
                shown: document.querySelectorAll('.jp-OutputArea-executeResult, .jp-OutputArea-displayData')
                    .length};""")
    info['errors'] = [e for e in drv.get_log('browser') if e['level'] in ('SEVERE', 'ERROR')]
    return info


def test_every_chapter_is_a_page_of_the_book():
    files = {f for f, _ in pages()}
    chapters = sorted(p.stem for p in (ROOT/'nbs').glob('[0-9]*.ipynb'))
    assert chapters, 'no chapters in nbs/'
    test_missing = [c for c in chapters if f'{c}.html' not in files]
    assert not test_missing, f'chapters without a page in {BOOK}: {test_missing} (is the book stale? make docs)'
    assert 'index.html' in files and all((BOOK/f).stat().st_size > 1000 for f in files)


def test_index_and_three_chapters_render_in_chromium(browser, book_url, tmp_path):
    book, seen = pages(), {}
    chapter_files = [f for f, _ in book if f != 'index.html']
    # the front page, the chapter with the plots, the serving chapter and the tour
    wanted = ['index.html'] + [f for f in chapter_files if f.startswith(('06_', '09_', '16_'))]
    assert len(wanted) == 4, wanted
    for f in wanted:
        info = seen[f] = open_page(browser, urljoin(book_url, f), tmp_path/f'{Path(f).stem}.png')
        assert not info['errors'], f'{f}: console errors {info["errors"]}'
        assert info['text'] > 500, f'{f}: the page is nearly empty ({info["text"]} characters)'
        assert all(i['ok'] for i in info['imgs']), \
            f'{f}: images that did not load: {[i for i in info["imgs"] if not i["ok"]]}'
        assert sorted(set(info['nav']) - {'index.html'}) == sorted(chapter_files), \
            f'{f}: the sidebar does not link every chapter'
        assert (tmp_path/f'{Path(f).stem}.png').stat().st_size > 10_000, f'{f}: blank screenshot?'
    title = dict(book)
    for f in wanted[1:]: assert title[f] in seen[f]['h1'], (f, title[f], seen[f]['h1'])
    # the front page's own text (not the sidebar) links every chapter, and the evaluate chapter shows its plots
    body_links = {urlparse(h).path for h in seen['index.html']['links'] if not urlparse(h).scheme}
    assert set(chapter_files) <= body_links, f'front page links missing: {sorted(set(chapter_files) - body_links)}'
    assert len(seen[wanted[1]]['imgs']) >= 2, \
        f'{wanted[1]}: expected the ROC and PR plots, found {seen[wanted[1]]["imgs"]}'
    # the tour shows the fitted estimator's report: its metrics table and the three plots inline
    tour = seen[wanted[3]]
    assert any('answers' in t and 'auroc' in t for t in tour['tables']), \
        f'{wanted[3]}: no metrics table: {tour["tables"]}'
    inline = [i for i in tour['imgs'] if i['src'].startswith('data:image/png')]
    assert len(inline) >= 3, f'{wanted[3]}: expected the ROC, PR and reliability plots, found {tour["imgs"]}'
    for f in wanted[1:]: # the book shows values, not only assertions
        assert seen[f]['shown'] >= 3, \
            f'{f}: {seen[f]["shown"]} values shown (results, tables, plots); expected at least 3'


def test_no_link_in_the_book_leads_nowhere():
    import re
    broken = []
    for f, _ in pages():
        for href in re.findall(r'href="([^"#]+)(?:#[^"]*)?"', (BOOK/f).read_text(encoding='utf-8')):
            # links out of the book are the reader's business
            if urlparse(href).scheme or href.startswith(('mailto:', '//')): continue
            if not (BOOK/href).exists(): broken.append((f, href))
    assert not broken, f'links to pages that do not exist: {broken[:10]}'
