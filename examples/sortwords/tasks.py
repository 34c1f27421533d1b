"""The task of DataStax's "Celery with Astra DB" walkthrough."""

from celery import Celery

app = Celery("tasks")
app.config_from_object("celeryconfig")


@app.task
def sortWords(text, capitalize):  # noqa: N802 - the walkthrough's name
    """Split ``text`` on spaces, sort the words case-insensitively, optionally upper-case them."""
    words = sorted(text.split(" "), key=str.lower)
    if capitalize:
        words = [word.upper() for word in words]
    return " ".join(words)
