import threading


def test_task_events_are_sent(celery_app, celery_worker):
    @celery_app.task(name="suite.events.evented")
    def evented():
        return 1

    celery_worker.reload()
    seen, ready = [], threading.Event()
    done = threading.Event()

    def record(event):
        seen.append(event["type"])
        if event["type"] == "task-succeeded":
            done.set()

    receivers = []

    def listen():
        with celery_app.connection_for_read() as connection:
            receiver = celery_app.events.Receiver(connection, handlers={"*": record})
            receivers.append(receiver)
            ready.set()
            receiver.capture(limit=None, timeout=10, wakeup=False)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        # The receiver's queue is declared as it starts consuming; until then events go nowhere: send again.
        for _ in range(50):
            evented.delay().get(timeout=10)
            if done.wait(0.2):
                break
    finally:
        receivers[0].should_stop = True
        thread.join(10)
    assert "task-succeeded" in seen


def test_the_sent_event_is_the_publishers(celery_app):
    from celery import signals

    sent = []

    def on_sent(sender=None, **kwargs):
        sent.append(sender)

    signals.after_task_publish.connect(on_sent, weak=False)
    try:
        @celery_app.task(name="suite.events.published")
        def published():
            return 1

        published.delay()
    finally:
        signals.after_task_publish.disconnect(on_sent)
    assert sent == ["suite.events.published"]
