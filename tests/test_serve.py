"""The listening page (`jplaylist.serving`) against the live session API itself.

Every queue the server returns must be what a `live.LiveSession` built the
same way returns after the same events (ids in order, scores); rejected calls
get a 4xx with the API's message and change nothing; sessions are isolated,
also when many are driven at once; the audio endpoint serves exactly the
stored samples (checked by soundfile). The browser test drives the real page
in headless Chromium (Debian's `chromium` and `chromium-driver`) against
uvicorn: start with "solo flute", skip a piano piece, ask for "more strings",
and the table on the page must equal the session API's queue; the head then
plays in the page's <audio> and, at its end, counts as a listen. The
launcher runs end to end on a trained workdir and a folder index.
"""

import asyncio
import io
import os
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile

from jplaylist import inference
from jplaylist import library_index
from jplaylist.data import builder
from jplaylist.serving import app as app_lib
from jplaylist.serving import audio
from jplaylist.session import live

# httpx2 is pinned in requirements.txt: missing, it is an install defect, not a skip.
import httpx2  # pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
from starlette.testclient import TestClient  # pylint: disable=g-import-not-at-top,wrong-import-position

FLUTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "session", "data",
                     "demo_flute.npz")
# The flute library's sessions of tests/session/test_live.py: same compiled programs.
OPTIONS = dict(max_examples=8)
QUEUE = 8
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The launcher's environment: this suite's compilation cache (see tests/test_play.py).
ENV = dict(os.environ, JAX_PLATFORMS="cpu",
           JAX_COMPILATION_CACHE_DIR=os.path.join(REPO, ".cache", "jax_compilation"),
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
AUDIO_RATE, AUDIO_SECONDS = 8000, 4.0  # not ended before the browser test seeks


@pytest.fixture(scope="module")
def flute(tmp_path_factory):
  """(index, embed_text, audio folder): the demo's 32 flute recordings, a text
  embedder of ensemble words (the normalised mean of the tracks whose ensemble
  holds every word), and a folder with a 4-s tone per track id."""
  index = library_index.load(FLUTE)
  unit = index.embeddings / np.linalg.norm(index.embeddings, axis=1, keepdims=True)
  ensembles = [a["ensemble"] for a in index.attributes]

  def embed(texts):
    means = [unit[[all(w in e for w in t.split()) for e in ensembles]].mean(axis=0)
             for t in texts]
    return np.stack([m / np.linalg.norm(m) for m in means])

  folder = tmp_path_factory.mktemp("flute_audio")
  clock = np.arange(int(AUDIO_RATE * AUDIO_SECONDS)) / AUDIO_RATE
  for i, track_id in enumerate(index.ids):
    tone = 0.3 * np.sin(2 * np.pi * (220.0 + 10 * i) * clock)
    soundfile.write(str(folder / track_id), tone, AUDIO_RATE, format="WAV", subtype="PCM_16")
  return index, embed, str(folder)


@pytest.fixture(scope="module")
def client(flute):
  index, embed, folder = flute
  web = app_lib.make_app(index, embed, audio.FolderAudio(folder), session_options=OPTIONS,
                         queue_length=QUEUE)
  with TestClient(web) as test_client:
    yield test_client


def _reference(flute, **start):
  index, embed, _ = flute
  return live.LiveSession(index, embed, **OPTIONS).start(**start)


def _assert_queue(reply, session, k=QUEUE):
  """The server's queue equals `session.next(k)`: ids in order and scores."""
  want = session.next(k)
  assert [t["id"] for t in reply["queue"]] == [t for t, _ in want]
  np.testing.assert_allclose([t["score"] for t in reply["queue"]], [s for _, s in want],
                             atol=2e-6)
  assert reply["event"] == session.event


def test_a_session_serves_the_live_api_queue_after_every_event(client, flute):
  index = flute[0]
  ensemble = dict(zip(index.ids, (a["ensemble"] for a in index.attributes)))
  created = client.post("/api/sessions", json={"text": "solo flute"})
  assert created.status_code == 201
  reply, session_id = created.json(), created.json()["session"]
  reference = _reference(flute, text="solo flute")
  _assert_queue(reply, reference)
  assert reply["queue"][0]["detail"].startswith(ensemble[reply["queue"][0]["id"]])
  first = reply["queue"][0]["id"]
  piano = next(t for t in index.ids if ensemble[t] == "flute with piano")
  steps = [("events", {"kind": "listen", "track_id": first, "seconds": None}, "listened"),
           ("events", {"kind": "skip", "track_id": piano, "seconds": 3.0}, "skipped"),
           ("requests", {"text": "less piano"}, None),
           ("events", {"kind": "listen", "track_id": index.ids[4], "seconds": 90.0,
                       "liked": True}, "listened"),
           ("events", {"kind": "skip", "track_id": index.ids[5], "seconds": 0.5,
                       "disliked": True}, "skipped")]
  for path, body, call in steps:
    reply = client.post(f"/api/sessions/{session_id}/{path}", json=body)
    assert reply.status_code == 200, reply.text
    if call is None:
      reference.request(body["text"])
      assert reply.json()["request"] == body
    else:
      flags = {k: body[k] for k in ("liked", "disliked") if k in body}
      kind = getattr(reference, call)(body["track_id"], body["seconds"], **flags)
      assert reply.json()["played"]["kind"] == live.examples.KIND_NAMES[kind]
    _assert_queue(reply.json(), reference)
  assert reply.json()["played"]["kind"] == "dislike"
  # GET the queue, with another k; a seed track starts a session too.
  _assert_queue(client.get(f"/api/sessions/{session_id}/queue?k=20").json(), reference, 20)
  seeded = client.post("/api/sessions", json={"seed_track": index.ids[7]}).json()
  _assert_queue(seeded, _reference(flute, seed_track=index.ids[7]))
  assert seeded["queue"][0]["id"] == index.ids[7]


def test_rejected_calls_get_4xx_with_the_message_and_change_nothing(client, flute):
  index = flute[0]
  sessions = client.app.state.sessions
  session_id = client.post("/api/sessions", json={"text": "flute"}).json()["session"]
  played = client.post(f"/api/sessions/{session_id}/events",
                       json={"kind": "listen", "track_id": index.ids[3]})
  assert played.status_code == 200
  saved = sessions.get(session_id).session.to_json()
  queue = client.get(f"/api/sessions/{session_id}/queue").json()
  base = f"/api/sessions/{session_id}"
  bad = [
      ("GET", "/api/sessions/nope/queue", None, 404, "unknown session 'nope'"),
      ("POST", "/api/sessions/nope/events", {"kind": "skip"}, 404, "unknown session"),
      ("POST", f"{base}/events", b"{not json", 400, "not JSON"),
      ("POST", f"{base}/events", [1, 2], 400, "expected a JSON object, got list"),
      ("POST", f"{base}/events", {"kind": "like", "track_id": index.ids[0]}, 400, "kind='like'"),
      ("POST", f"{base}/events", {"kind": "skip"}, 400, "track_id: required"),
      ("POST", f"{base}/events", {"kind": "skip", "track_id": "nope", "seconds": 1}, 404,
       "unknown track id 'nope'"),
      ("POST", f"{base}/events", {"kind": "skip", "track_id": index.ids[3], "seconds": 1}, 400,
       "already been played"),
      ("POST", f"{base}/events", {"kind": "skip", "track_id": index.ids[0]}, 400, "seconds=None"),
      ("POST", f"{base}/events", {"kind": "skip", "track_id": index.ids[0], "seconds": "3"}, 400,
       "seconds='3'"),
      ("POST", f"{base}/events", {"kind": "skip", "track_id": index.ids[0], "seconds": -1}, 400,
       "seconds=-1"),
      ("POST", f"{base}/events", {"kind": "skip", "track_id": index.ids[0], "seconds": 1,
                                  "liked": True}, 400, "takes 'disliked'"),
      ("POST", f"{base}/events", {"kind": "listen", "track_id": index.ids[0], "when": 1}, 400,
       "unexpected fields \\['when'\\]"),
      ("POST", f"{base}/requests", {"text": ""}, 400, "names nothing"),
      ("POST", f"{base}/requests", {"text": "less"}, 400, "names nothing"),
      ("POST", f"{base}/requests", {"text": "f" * 201}, 400, "201 characters"),
      ("POST", f"{base}/requests", {"text": 3}, 400, "text=3: expected str"),
      ("POST", f"{base}/requests", {"text": "x" * 20_000}, 413, "limit is 16384"),
      ("GET", f"{base}/queue?k=0", None, 400, "k='0'"),
      ("GET", f"{base}/queue?k=many", None, 400, "k='many'"),
      ("GET", "/audio/nope", None, 404, "unknown track id 'nope'"),
      ("GET", "/no/such/page", None, 404, "Not Found"),
  ]
  for method, path, body, status, message in bad:
    content = body if isinstance(body, bytes) else None
    json_body = None if content is not None or body is None else body
    reply = client.request(method, path, content=content, json=json_body)
    assert reply.status_code == status, (path, body, reply.text)
    assert reply.json()["error"], (path, body)
    assert re.search(message, reply.json()["error"]), (reply.json(), message)
    assert sessions.get(session_id).session.to_json() == saved, (path, body)
  assert client.get(f"{base}/queue").json() == queue
  # A session that cannot start is not kept.
  count = len(sessions)
  for body, status in (({"text": "less"}, 400), ({"seed_track": "nope"}, 404),
                       ({"text": ["flute"]}, 400)):
    assert client.post("/api/sessions", json=body).status_code == status, body
  assert len(sessions) == count
  # The session still works after all that; DELETE ends it.
  assert client.post(f"{base}/requests", json={"text": "more strings"}).status_code == 200
  assert client.delete(base).status_code == 204
  assert client.get(f"{base}/queue").status_code == 404


def test_sessions_are_isolated_also_when_driven_at_once(flute):
  """Eight browsers at once over the real ASGI app, four calls each, two of
  them fired together on one session: each ends as its own reference."""
  index, embed, _ = flute
  web = app_lib.make_app(index, embed, None, session_options=OPTIONS, queue_length=QUEUE,
                         max_sessions=8)
  texts = ["solo flute", "strings", "piano", "flute with strings"] * 2

  async def browser(http, number):
    created = (await http.post("/api/sessions", json={"text": texts[number]})).json()
    base = f"/api/sessions/{created['session']}"
    first, second = (t["id"] for t in created["queue"][:2])
    together = await asyncio.gather(
        http.post(f"{base}/events", json={"kind": "skip", "track_id": first, "seconds": 1.0}),
        http.post(f"{base}/requests", json={"text": "less piano"}))
    assert [r.status_code for r in together] == [200, 200]
    await http.post(f"{base}/events", json={"kind": "listen", "track_id": second})
    return created["session"], first, second, (await http.get(f"{base}/queue")).json()

  async def run_all():
    transport = httpx2.ASGITransport(app=web)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
      return await asyncio.gather(*(browser(http, n) for n in range(len(texts))))

  results = asyncio.run(run_all())
  assert len({r[0] for r in results}) == len(texts)
  for number, (_, first, second, final) in enumerate(results):
    # The two calls sent together ran one after the other, in either order.
    wanted = []
    for request_first in (False, True):
      reference = _reference(flute, text=texts[number])
      if request_first:
        reference.request("less piano")
      reference.skipped(first, 1.0)
      if not request_first:
        reference.request("less piano")
      reference.listened(second)
      wanted.append([t for t, _ in reference.next(QUEUE)])
    assert [t["id"] for t in final["queue"]] in wanted, number
  # A ninth session: the least recently used (the first, once the others are
  # read again) is forgotten, the others kept.
  with TestClient(web) as client:
    for result in results[1:]:
      assert client.get(f"/api/sessions/{result[0]}/queue").status_code == 200
    client.post("/api/sessions", json={})
    assert client.get(f"/api/sessions/{results[0][0]}/queue").status_code == 404
    assert client.get(f"/api/sessions/{results[1][0]}/queue").status_code == 200


def test_audio_is_the_stored_samples_as_wav(client, flute, tiny_demo, tmp_path):
  index, _, folder = flute
  reply = client.get(f"/audio/{index.ids[2]}")
  assert reply.status_code == 200 and reply.headers["content-type"] == "audio/wav"
  got, rate = soundfile.read(io.BytesIO(reply.content), dtype="int16")
  want, want_rate = soundfile.read(os.path.join(folder, index.ids[2]), dtype="int16")
  assert rate == want_rate == AUDIO_RATE
  np.testing.assert_array_equal(got, want)
  # Ranges, as the <audio> element asks for them.
  whole = reply.content
  part = client.get(f"/audio/{index.ids[2]}", headers={"range": "bytes=10-19"})
  assert part.status_code == 206 and part.content == whole[10:20]
  assert part.headers["content-range"] == f"bytes 10-19/{len(whole)}"
  assert client.get(f"/audio/{index.ids[2]}", headers={"range": "bytes=-5"}).content == whole[-5:]
  assert client.get(f"/audio/{index.ids[2]}",
                    headers={"range": f"bytes={len(whole)}-"}).status_code == 416
  # A folder source never leaves its folder, by a path or by a link.
  music = tmp_path / "music"
  music.mkdir()
  outside = tmp_path / "outside.wav"
  outside.write_bytes(whole)
  (music / "inside.wav").write_bytes(whole)
  (music / "link.wav").symlink_to(outside)
  source = audio.FolderAudio(str(music))
  assert source.wav("inside.wav") == whole and source.ids() == ["inside.wav", "link.wav"]
  for escape in ("../outside.wav", str(outside), "link.wav", "", "missing.wav"):
    with pytest.raises(audio.UnknownAudioError, match="no audio file"):
      source.wav(escape)
  # A built dataset: the stored int16 waveform at the dataset's rate.
  dataset = tiny_demo[0].path
  source = audio.from_source(dataset)
  assert isinstance(source, audio.DatasetAudio)
  record = builder.open_split(dataset, "test")[0]
  got, rate = soundfile.read(io.BytesIO(source.wav(record["id"].decode())),
                             dtype="int16")
  assert rate == builder.sample_rate_of(dataset)
  np.testing.assert_array_equal(got, np.asarray(record["audio"]))
  with pytest.raises(audio.UnknownAudioError, match="no recording 'nope'"):
    source.wav("nope")


# ------------------------------------------------------------------ the real page


def _chromium_or_skip():
  missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
  if missing:
    pytest.skip(f"{' and '.join(missing)} missing: the browser test needs Debian's Chromium "
                "(apt-get install -y chromium chromium-driver)")
  # selenium is pinned in requirements-test.txt: missing, it fails rather than skips.
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  return webdriver


@pytest.fixture(scope="module")
def server(flute):
  """uvicorn serving the flute app on a free loopback port, in a thread."""
  import uvicorn  # pylint: disable=g-import-not-at-top
  index, embed, folder = flute
  web = app_lib.make_app(index, embed, audio.FolderAudio(folder), session_options=OPTIONS,
                         queue_length=QUEUE)
  sock = socket.socket()
  sock.bind(("127.0.0.1", 0))
  uv = uvicorn.Server(uvicorn.Config(web, log_level="warning"))
  thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
  thread.start()
  while not uv.started and thread.is_alive():
    threading.Event().wait(0.05)
  yield f"http://127.0.0.1:{sock.getsockname()[1]}"
  uv.should_exit = True
  thread.join(timeout=10)
  sock.close()


def test_the_page_shows_the_session_api_queue(server, flute, monkeypatch, tmp_path):
  webdriver = _chromium_or_skip()
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager download a driver
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio",
                   "--disable-gpu", "--window-size=1000,1300", "--autoplay-policy="
                   "no-user-gesture-required"):
    options.add_argument(argument)
  driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
  wait = WebDriverWait(driver, 60)
  try:
    driver.get(server + "/")
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")

    def act_and_wait(act, renders):
      act()
      wait.until(lambda d: d.find_element(By.ID, "queue-body").get_attribute(
          "data-renders") == str(renders))
      assert driver.find_element(By.ID, "status").text == ""

    def page_queue():
      return [(row.get_attribute("data-track-id"), row.find_element(By.CLASS_NAME, "detail").text)
              for row in driver.find_elements(By.CSS_SELECTOR, "#queue-body tr")]

    driver.find_element(By.ID, "start-text").send_keys("solo flute")
    act_and_wait(driver.find_element(By.ID, "start-button").click, 1)
    piano = next(track for track, detail in page_queue() if "piano" in detail)
    row = driver.find_element(By.CSS_SELECTOR, f"#queue-body tr[data-track-id='{piano}']")
    act_and_wait(row.find_element(By.CLASS_NAME, "skip-button").click, 2)
    logged = driver.find_element(By.CSS_SELECTOR, "#log li")
    assert (logged.get_attribute("data-kind"), logged.get_attribute("data-track-id")) == (
        "skip", piano)
    seconds = float(logged.get_attribute("data-seconds"))
    after_skip = [track for track, _ in page_queue()]
    driver.find_element(By.ID, "request-text").send_keys("more strings")
    act_and_wait(driver.find_element(By.ID, "request-button").click, 3)
    shown = [track for track, _ in page_queue()]
    reference = _reference(flute, text="solo flute")
    reference.skipped(piano, seconds)
    reference.request("more strings")
    assert shown == [track for track, _ in reference.next(QUEUE)]
    assert piano not in shown and shown != after_skip  # the request re-sorted the queue
    # The same session through its id in the URL: the API's queue again.
    session_id = driver.find_element(By.ID, "session-id").text
    assert session_id in driver.current_url
    # The head of the queue plays in the page's native <audio>, from the library.
    driver.find_element(By.CSS_SELECTOR, "#queue-body tr .play-button").click()
    player = "const p = document.getElementById('player'); "
    wait.until(lambda d: d.execute_script(player + "return p.readyState") >= 1)
    duration, playing = driver.execute_script(player + "return [p.duration, p.dataset.trackId]")
    assert abs(duration - AUDIO_SECONDS) < 0.01 and playing == shown[0]
    driver.save_screenshot(str(tmp_path / "listening_page.png"))
    assert (tmp_path / "listening_page.png").stat().st_size > 0
    # Played to its end (a seek near it, by a Range request): a whole listen,
    # and the new head plays next.
    driver.execute_script(player + "p.currentTime = p.duration - 0.2")
    wait.until(lambda d: d.find_element(By.ID, "queue-body").get_attribute("data-renders")
               == "4")
    logged = driver.find_element(By.CSS_SELECTOR, "#log li")
    assert (logged.get_attribute("data-kind"), logged.get_attribute("data-track-id")) == (
        "listen", shown[0])
    reference.listened(shown[0])
    shown = [track for track, _ in page_queue()]
    assert shown == [track for track, _ in reference.next(QUEUE)]
    wait.until(lambda d: d.execute_script(player + "return !p.paused && p.dataset.trackId")
               == shown[0])
  finally:
    driver.quit()


def test_the_launcher_serves_a_folder_index_with_the_text_tower(trained_workdir, tmp_path):
  """`python -m launch.serve` end to end: a trained workdir's text tower, an
  index whose meta names its audio folder (ids are relative paths), loopback."""
  model = inference.load(trained_workdir)
  music = tmp_path / "music"
  (music / "live").mkdir(parents=True)
  ids = ["a.wav", "b.wav", "live/c.wav", "live/d.wav"]
  tone = 0.2 * np.sin(np.linspace(0, 400 * np.pi, AUDIO_RATE))
  for track_id in ids:
    soundfile.write(str(music / track_id), tone, AUDIO_RATE, subtype="PCM_16")
  embeddings = np.random.default_rng(0).standard_normal((4, model.model.embed_dim))
  embeddings[2] = model.embed_text(["flute"])[0]
  index = library_index.LibraryIndex(ids=ids, embeddings=embeddings.astype(np.float32),
                                     attributes=[{"duration_s": 1.0}] * 4,
                                     meta={"source": str(music)})
  path = index.save(str(tmp_path / "library.npz"))
  # The launcher binds the port itself, and another test running beside this
  # one (pytest-xdist) may take a probed port first: then it starts again on
  # another. Any other early exit fails the test.
  for attempt in range(3):
    with socket.socket() as probe:
      probe.bind(("127.0.0.1", 0))
      port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "launch.serve", f"--workdir={trained_workdir}",
         f"--index={path}", f"--port={port}", "--queue_length=4"], cwd=REPO, env=ENV,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while server.poll() is None and time.monotonic() < deadline:
      try:
        httpx2.get(url + "/", timeout=2.0)
        break
      except httpx2.HTTPError:
        time.sleep(0.5)
    if server.poll() is None or attempt == 2:
      break
    early = server.communicate()[0]
    assert "address already in use" in early.lower(), early[-3000:]
  try:
    assert server.poll() is None, server.communicate()[0][-3000:]
    created = httpx2.post(url + "/api/sessions", json={"text": "more flute"}, timeout=60)
    assert created.status_code == 201, created.text
    _assert_queue(created.json(), live.LiveSession(index, model.embed_text).start(
        text="more flute"), k=4)
    assert created.json()["queue"][0]["id"] == "live/c.wav"
    heard = httpx2.get(url + "/audio/live/c.wav", timeout=60)
    assert heard.status_code == 200
    np.testing.assert_array_equal(soundfile.read(io.BytesIO(heard.content), dtype="int16")[0],
                                  soundfile.read(str(music / "live/c.wav"), dtype="int16")[0])
  finally:
    server.terminate()
    output = server.communicate(timeout=60)[0]
  assert f"4 tracks from {path}, audio from {music} (0 without audio)" in output, output[-3000:]
