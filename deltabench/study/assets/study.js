/* deltabench study page: randomised two-alternative trials, keyboard driven, answers saved as
   one JSON file. The schedule is computed from the participant id exactly as
   deltabench/study/schedule.py does (FNV-1a seed, mulberry32, Fisher-Yates), so an analysis can
   check that a response file records the assignment its participant id implies. */
(function () {
  "use strict";
  var S = JSON.parse(document.getElementById("study-data").textContent);
  var RESPONSES_FORMAT = "deltabench-study-responses/1";

  function fnv1a(text) {
    var bytes = new TextEncoder().encode(text), h = 0x811c9dc5;
    for (var i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
    return h >>> 0;
  }
  function mulberry32(seed) {
    var a = seed >>> 0;
    return function () {
      a = (a + 0x6D2B79F5) >>> 0;
      var t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = ((t + Math.imul(t ^ (t >>> 7), 61 | t)) >>> 0) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function shuffle(xs, rng) {
    xs = xs.slice();
    for (var i = xs.length - 1; i > 0; i--) {
      var j = Math.floor(rng() * (i + 1)), t = xs[i];
      xs[i] = xs[j]; xs[j] = t;
    }
    return xs;
  }
  function balanced(n, rng) {
    var flags = [], h = Math.floor(n / 2), i;
    for (i = 0; i < h; i++) flags.push(true);
    for (i = 0; i < h; i++) flags.push(false);
    if (n % 2) flags.push(rng() < 0.5);
    return shuffle(flags, rng);
  }
  function schedule(studyId, participant, pairs, nChecks) {
    var rng = mulberry32(fnv1a(studyId + "\n" + participant));
    var idx = [], k;
    for (k = 0; k < pairs.length; k++) idx.push(k);
    var order = shuffle(idx, rng);
    var firstLeft = pairs.map(function () { return false; });
    var distinct = pairs.filter(function (p, i) { return pairs.indexOf(p) === i; }).sort(function (a, b) { return a - b; });
    distinct.forEach(function (p) {
      var members = [];
      for (var m = 0; m < pairs.length; m++) if (pairs[m] === p) members.push(m);
      var flags = balanced(members.length, rng);
      members.forEach(function (m, i) { firstLeft[m] = flags[i]; });
    });
    var checkLeft = balanced(nChecks, rng);
    var trials = order.map(function (k) { return { kind: "round", item: k, first_left: firstLeft[k] }; });
    for (var c = nChecks - 1; c >= 0; c--) {
      var at = Math.floor(((c + 1) * pairs.length) / (nChecks + 1));
      trials.splice(at, 0, { kind: "check", item: c, first_left: checkLeft[c] });
    }
    return trials;
  }

  var $ = function (id) { return document.getElementById(id); };
  var state = { trials: [], pos: 0, answers: [], participant: null, started: null, shownAt: 0, current: null };
  var response = null;

  $("q-accuracy").textContent = $("q-accuracy-intro").textContent = S.questions.accuracy;
  $("q-realism").textContent = $("q-realism-intro").textContent = S.questions.realism;
  var fromUrl = new URLSearchParams(window.location.search).get("pid");
  if (fromUrl) $("pid").value = fromUrl;
  $("pid").focus();

  function begin() {
    var pid = $("pid").value.trim();
    if (!pid) { $("start-error").textContent = "Please enter your participant id."; return; }
    state.participant = pid;
    state.started = new Date().toISOString();
    state.trials = schedule(S.study_id, pid, S.items.map(function (it) { return it.pair; }), S.attention_checks.length);
    $("start").hidden = true; $("trial").hidden = false; $("progress-box").hidden = false;
    document.body.dataset.state = "trial";
    show(0);
  }

  function show(pos) {
    state.pos = pos;
    var t = state.trials[pos], left, right, leftImg, rightImg, target, original;
    if (t.kind === "round") {
      var it = S.items[t.item];
      var a = t.first_left ? 0 : 1, b = 1 - a;
      left = it.methods[a]; right = it.methods[b]; leftImg = it.images[a]; rightImg = it.images[b];
      target = it.target; original = it.original;
    } else {
      var ch = S.attention_checks[t.item];
      left = t.first_left ? "edit" : "unedited"; right = t.first_left ? "unedited" : "edit";
      leftImg = t.first_left ? ch.edit : ch.unedited; rightImg = t.first_left ? ch.unedited : ch.edit;
      target = ch.target; original = ch.original;
    }
    state.current = { position: pos, kind: t.kind, item: t.item, first_left: t.first_left, left: left, right: right,
                      left_image: leftImg, right_image: rightImg, target: target, accuracy: null, realism: null };
    $("prompt").textContent = target;
    $("img-original").src = original; $("img-left").src = leftImg; $("img-right").src = rightImg;
    var n = state.trials.length;
    $("progress-text").textContent = "Pair " + (pos + 1) + " of " + n;
    $("progress").max = n; $("progress").value = pos;
    document.body.dataset.trial = String(pos);
    document.body.dataset.kind = t.kind;
    paint();
    state.shownAt = performance.now();
  }

  function paint() {
    var c = state.current;
    document.querySelectorAll(".question button").forEach(function (btn) {
      btn.classList.toggle("chosen", c[btn.dataset.q] === btn.dataset.side);
    });
    $("next").disabled = !(c.accuracy && c.realism);
  }

  function answer(q, side) {
    if (document.body.dataset.state !== "trial") return;
    state.current[q] = side;
    paint();
  }

  function next() {
    var c = state.current;
    if (!(c.accuracy && c.realism)) return;
    c.ms = Math.round(performance.now() - state.shownAt);
    state.answers.push(c);
    if (state.pos + 1 < state.trials.length) show(state.pos + 1);
    else finish();
  }

  function fileName() {
    return "responses-" + S.study_id + "-" + state.participant.replace(/[^A-Za-z0-9_.-]/g, "_") + ".json";
  }

  function download() {
    var blob = new Blob([JSON.stringify(response, null, 1)], { type: "application/json" });
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = fileName();
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  function finish() {
    response = {
      format: RESPONSES_FORMAT, study_id: S.study_id, participant: state.participant,
      methods: S.methods, rounds: S.rounds, checks: S.attention_checks.length,
      started: state.started, finished: new Date().toISOString(), user_agent: navigator.userAgent,
      schedule: state.trials, trials: state.answers
    };
    $("trial").hidden = true; $("done").hidden = false;
    $("progress").value = state.trials.length;
    $("progress-text").textContent = "Done: " + state.trials.length + " of " + state.trials.length;
    document.body.dataset.state = "done";
    var saved = function (how) { document.body.dataset.saved = how; };
    if (/^https?:$/.test(window.location.protocol)) {
      fetch("responses", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(response) })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (j) {
          if (!j || !j.saved) throw new Error("not saved");
          $("done-text").textContent = "Your answers are saved (" + j.saved + "). You may close this page.";
          saved("server");
        })
        .catch(function () {
          download();
          $("done-text").textContent = "Your answers were downloaded as " + fileName() + ": please send that file to the experimenter.";
          saved("download");
        });
    } else {
      download();
      $("done-text").textContent = "Your answers were downloaded as " + fileName() + ": please send that file to the experimenter.";
      saved("download");
    }
  }

  $("begin").addEventListener("click", begin);
  $("next").addEventListener("click", next);
  $("download").addEventListener("click", download);
  document.querySelectorAll(".question button").forEach(function (btn) {
    btn.addEventListener("click", function () { answer(btn.dataset.q, btn.dataset.side); });
  });
  document.addEventListener("keydown", function (e) {
    var st = document.body.dataset.state;
    if (st === "start") { if (e.key === "Enter") { e.preventDefault(); begin(); } return; }
    if (st !== "trial") return;
    var map = { ArrowLeft: ["accuracy", "left"], ArrowRight: ["accuracy", "right"], a: ["accuracy", "left"],
                d: ["accuracy", "right"], "1": ["realism", "left"], "2": ["realism", "right"] };
    if (map[e.key]) { e.preventDefault(); answer(map[e.key][0], map[e.key][1]); }
    else if (e.key === "Enter") { e.preventDefault(); next(); }
  });
})();
