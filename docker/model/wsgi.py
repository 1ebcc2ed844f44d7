"""WSGI entry of the classic layout, for `gunicorn wsgi:app` run from this directory.
`serve` (bsm-serve) does not use it: it runs `bsm_nb.serve:create_app()` in each gunicorn worker itself."""
import predictor as myapp

app = myapp.app
