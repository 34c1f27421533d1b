from celery import chain, chord, group


def _tasks(app):
    @app.task
    def add(x, y):
        return x + y

    @app.task
    def mul(x, y):
        return x * y

    @app.task
    def tsum(numbers):
        return sum(numbers)

    return add, mul, tsum


def test_chain(celery_app, celery_worker):
    add, mul, _ = _tasks(celery_app)
    celery_worker.reload()
    assert chain(add.s(2, 2), mul.s(8), add.s(1)).delay().get(timeout=10) == 33


def test_chain_with_the_pipe_operator(celery_app, celery_worker):
    add, mul, _ = _tasks(celery_app)
    celery_worker.reload()
    assert (add.s(1, 1) | mul.s(10)).delay().get(timeout=10) == 20


def test_group(celery_app, celery_worker):
    add, _, _ = _tasks(celery_app)
    celery_worker.reload()
    assert group(add.s(n, n) for n in range(5)).delay().get(timeout=10) == [0, 2, 4, 6, 8]


def test_chord(celery_app, celery_worker):
    add, _, tsum = _tasks(celery_app)
    celery_worker.reload()
    assert chord(add.s(n, n) for n in range(4))(tsum.s()).get(timeout=20) == 12


def test_immutable_signature_ignores_the_parent_result(celery_app, celery_worker):
    add, _, _ = _tasks(celery_app)
    celery_worker.reload()
    assert chain(add.s(1, 1), add.si(5, 5)).delay().get(timeout=10) == 10


def test_link_callback_runs(celery_app, celery_worker):
    add, mul, _ = _tasks(celery_app)
    celery_worker.reload()
    result = add.apply_async((2, 3), link=mul.s(10))
    assert result.get(timeout=10) == 5
    child = result.children[0] if result.children else None
    if child is None:  # children arrive with the parent's result on some backends: ask again
        result = celery_app.AsyncResult(result.id)
        child = result.children[0]
    assert child.get(timeout=10) == 50


def test_map_and_starmap(celery_app, celery_worker):
    add, _, tsum = _tasks(celery_app)
    celery_worker.reload()
    assert add.starmap([(1, 2), (3, 4)]).delay().get(timeout=10) == [3, 7]
    assert tsum.map([[1, 2], [3]]).delay().get(timeout=10) == [3, 3]


def test_chunks(celery_app, celery_worker):
    add, _, _ = _tasks(celery_app)
    celery_worker.reload()
    result = add.chunks([(n, n) for n in range(6)], 3).group().delay().get(timeout=10)
    assert result == [[0, 2, 4], [6, 8, 10]]
