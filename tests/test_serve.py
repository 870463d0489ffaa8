"""rnnlab serve: answers equal `rnnlab suggest` and a fresh read of the whole text, every
bad input is a 4xx with one line and the server goes on, the session and memory limits
drop the oldest idle session and its client recovers."""
import json

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from rnnlab.cli import main
from rnnlab.infer import Predictor
from rnnlab.serve import Limits, create_app, load_models


def _client(*runs, **limits):
    return TestClient(create_app(load_models(list(runs)), Limits(**limits)))


def _words(answer):
    return [(s["word"], s["p"]) for s in answer["suggestions"]]


def _same(got, want):
    assert [w for w, _ in got] == [w for w, _ in want]
    assert [p for _, p in got] == pytest.approx([p for _, p in want], rel=1e-4, abs=1e-6)


@pytest.fixture(scope="module")
def client(tiny_word_run, tiny_char_run):
    with _client(tiny_word_run, tiny_char_run) as c:
        yield c


def test_health_models_and_page(client, tiny_word_run):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/v1/models").json()
    assert info["default"] == "word-lstm"
    word, char = info["models"]
    assert (word["name"], word["architecture"], word["level"]) == ("word-lstm", "lstm", "word")
    assert (char["name"], char["architecture"], char["level"]) == ("char-gru", "gru", "char")
    pred = Predictor.load(tiny_word_run)
    assert word["vocab_size"] == len(pred.vocab)
    assert word["parameters"] == sum(p.numel() for p in pred.model.parameters())
    page = client.get("/")
    assert page.status_code == 200 and '<textarea id="text"' in page.text
    assert page.text.count('class="suggestion"') == 3
    assert "http" not in page.text.replace("http-equiv", "")             # no CDN
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize("model,text,k", [("word-lstm", "Maria was born in France . She", 3),
                                          ("word-lstm", "The clouds in the sky are", 5),
                                          ("char-gru", "She grew up spe", 3),
                                          ("char-gru", "The grass is ", 2)])
def test_http_answers_equal_rnnlab_suggest(client, capsys, tiny_word_run, tiny_char_run,
                                           model, text, k):
    run = tiny_word_run if model == "word-lstm" else tiny_char_run
    capsys.readouterr()
    assert main(["suggest", str(run), text, "-k", str(k)]) == 0
    cli = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    r = client.post("/v1/suggest", json={"text": text, "k": k, "model": model})
    assert r.status_code == 200 and r.json()["model"] == model
    got = _words(r.json())
    assert [w for w, _ in got] == [w for w, _ in cli] and len(got) == k
    assert [round(p, 4) for _, p in got] == pytest.approx([float(p) for _, p in cli], abs=1e-4)


EDITS = ["Maria", "Maria was born in Fr", "Maria was born in France . She grew up speaking ",
         "Maria was born in France . She grew", "Maria was born in Spain",      # delete, type
         "Maria was born in Spain . The clouds in the sky are",                  # paste
         "The grass is", "", "He was born in"]                                  # replace


@pytest.mark.parametrize("model", ["word-lstm", "char-gru"])
def test_typing_session_equals_a_fresh_read_after_every_edit(client, model, tiny_word_run,
                                                             tiny_char_run):
    run = tiny_word_run if model == "word-lstm" else tiny_char_run
    texts = [e[:n] for e in EDITS for n in sorted({1, len(e) // 2, len(e)}) if n <= len(e)]
    with client.websocket_connect("/v1/type") as ws:
        ws.send_json({"model": model, "k": 3})
        for i, text in enumerate(texts):
            ws.send_json({"text": text, "id": i})
            answer = ws.receive_json()
            assert answer["id"] == i and answer["model"] == model and answer["ms"] >= 0
            _same(_words(answer), Predictor.load(run).suggest(text, 3))


def test_typing_steps_only_over_new_words(client):
    def steps():
        return client.get("/v1/stats").json()["batching"]["word-lstm"]["steps"]
    got = []
    with client.websocket_connect("/v1/type") as ws:
        for i, text in enumerate(["Maria was born in France .", "Maria was born in France . She",
                                  "Maria was born in France . She grew up",
                                  "Maria was born in France . She grew", "Maria was born"]):
            before = steps()
            ws.send_json({"text": text, "id": i})
            ws.receive_json()
            got.append(steps() - before)
    # deletions reuse saved states; a last word that is itself a word ("grew", "born") costs
    # one step: the suggestions also look past it (rnnlab.infer, "free so" -> "software")
    assert got == [6, 1, 2, 1, 1]


def test_messages_sent_while_busy_are_answered_for_the_latest_text(client, tiny_char_run):
    text = "She grew up speaking French. He was born in Spa"
    with client.websocket_connect("/v1/type") as ws:
        ws.send_json({"model": "char-gru"})
        for n in range(1, len(text) + 1):                 # a fast typist: no waiting
            ws.send_json({"text": text[:n], "id": n})
        answers = [ws.receive_json()]
        while answers[-1]["id"] != len(text):
            answers.append(ws.receive_json())
    ids = [a["id"] for a in answers]
    assert ids == sorted(ids) and len(ids) <= len(text)
    _same(_words(answers[-1]), Predictor.load(tiny_char_run).suggest(text, 3))


BAD_HTTP = [(b"{not json", 400, "not valid JSON"), (b"[1, 2]", 400, "expected a JSON object"),
            (b'{"k": 3}', 400, 'missing "text"'), (b'{"text": 5}', 400, '"text" must be'),
            (b'{"text": "a", "k": "3"}', 400, '"k" must be an integer'),
            (b'{"text": "a", "k": true}', 400, '"k" must be an integer'),
            (b'{"text": "a", "k": 0}', 422, "between 1 and 20"),
            (b'{"text": "a", "k": 21}', 422, "between 1 and 20"),
            (b'{"text": "a", "model": "nope"}', 404, "unknown model 'nope'"),
            (b'{"text": "a", "model": 7}', 400, '"model" must be a string'),
            (json.dumps({"text": "a" * 4001}).encode(), 413, "limit is 4000"),
            (b'{"text": "' + b"a" * 70000 + b'"}', 413, "the limit is 65536"),
            (b"\xff\xfe", 400, "not valid JSON")]


@pytest.mark.parametrize("body,status,message", BAD_HTTP)
def test_bad_http_input_is_a_4xx_with_one_line(client, body, status, message):
    r = client.post("/v1/suggest", content=body)
    assert r.status_code == status
    error = r.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in error
    assert client.post("/v1/suggest", json={"text": "The grass"}).status_code == 200


def test_unknown_paths_and_methods_answer_json(client):
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json()
    r = client.get("/v1/suggest")
    assert r.status_code == 405 and "error" in r.json()


def test_bad_websocket_input_gets_an_error_and_the_session_goes_on(client, tiny_word_run):
    bad = ["{oops", "[]", '{"text": 3, "id": 1}', '{"text": "a", "k": 99, "id": 2}',
           '{"model": "nope", "id": 3}', '{"id": 4}', json.dumps({"text": "a" * 4001})]
    with client.websocket_connect("/v1/type") as ws:
        for raw in bad:
            ws.send_text(raw)
            answer = ws.receive_json()
            assert set(answer) == {"error", "id"} and "\n" not in answer["error"]
        ws.send_bytes(b'{"text": "binary"}')                         # bytes are read too
        assert "suggestions" in ws.receive_json()
        ws.send_json({"text": "The clouds in the sky are", "id": 9})
        answer = ws.receive_json()
        assert answer["id"] == 9
        _same(_words(answer), Predictor.load(tiny_word_run).suggest("The clouds in the sky are", 3))


def test_a_message_over_the_size_limit_closes_with_1009(client):
    with client.websocket_connect("/v1/type") as ws:
        ws.send_text('{"text": "' + "a" * 70000 + '"}')
        assert "limit is 65536" in ws.receive_json()["error"]
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_json()
        assert e.value.code == 1009


def _type(ws, text, i=0):
    ws.send_json({"text": text, "id": i})
    return ws.receive_json()


@pytest.mark.parametrize("limit", ["sessions", "memory"])
def test_the_oldest_idle_session_is_dropped_and_recovers(tiny_word_run, limit):
    models = load_models([tiny_word_run])
    entry = models["word-lstm"].entry_bytes
    limits = Limits(max_sessions=2) if limit == "sessions" else \
        Limits(max_cache_mb=25 * entry / 2**20)                # room for 25 tokens in all
    text = "Maria was born in France . She grew up speaking"      # 10 tokens
    with TestClient(create_app(models, limits)) as c, c.websocket_connect("/v1/type") as a, \
            c.websocket_connect("/v1/type") as b:
        assert "rebuilt" not in _type(a, text)
        assert "rebuilt" not in _type(b, text)
        assert c.get("/v1/stats").json()["dropped_total"] == 0
        with c.websocket_connect("/v1/type") as d:
            _type(d, text)                                        # one too many: a goes
            stats = c.get("/v1/stats").json()
            assert stats["dropped_total"] == 1 and stats["sessions_with_state"] == 2
            assert stats["cache_mb"] * 2**20 <= max(limits.max_cache_mb * 2**20, 22 * entry)
            again = _type(a, text + " French")                   # a recovers from its text
            assert again["rebuilt"] is True
            _same(_words(again), Predictor.load(tiny_word_run).suggest(text + " French", 3))
            assert "rebuilt" not in _type(a, text + " French .")
            assert c.get("/v1/stats").json()["dropped_total"] == 2       # b, the oldest now


def test_connections_over_the_limit_close_with_1013(tiny_word_run):
    with _client(tiny_word_run, max_connections=1) as c, c.websocket_connect("/v1/type") as a:
        with c.websocket_connect("/v1/type") as b, pytest.raises(WebSocketDisconnect) as e:
            b.receive_json()
        assert e.value.code == 1013
        assert "suggestions" in _type(a, "The grass")


def test_serve_command_refuses_bad_runs_and_options(tmp_path, capsys, tiny_word_run):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert main(["serve", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):                           # checked as it is parsed
        main(["serve", str(tiny_word_run), "--port", "70000"])
    assert main(["serve", str(tiny_word_run), str(tiny_word_run)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and all(e.startswith("rnnlab serve: error:") for e in errors)
    assert "no such directory" in errors[0] and "not a run directory" in errors[1]
    assert "two models are named" in errors[3]


def test_serve_command_listens_and_answers(tiny_word_run):
    """`rnnlab serve RUN --port 0` in its own process: says where, answers, stops on SIGINT."""
    import re
    import signal
    import subprocess
    import sys
    import urllib.request
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab", "serve", str(tiny_word_run),
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        assert json.loads(urllib.request.urlopen(url + "healthz", timeout=10).read()) == \
            {"status": "ok"}
        req = urllib.request.Request(url + "v1/suggest", data=b'{"text": "The grass"}',
                                     headers={"Content-Type": "application/json"})
        assert len(json.loads(urllib.request.urlopen(req, timeout=10).read())["suggestions"]) == 3
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
