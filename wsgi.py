"""What gunicorn loads: ``gunicorn wsgi:app`` (see Procfile and gunicorn.conf.py)."""

from qrlogin import create_app

app = create_app()
