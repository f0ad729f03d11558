// vae explore: the page's behaviour. Talks to the JSON API in vae_cli/explore/server.py.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  run: null,     // the run's name
  info: null,    // /api/model's answer
  code: [],      // the code the sliders show
  label: null,   // the class, for a conditional run
  seed: 0,       // of the next random code
  ends: {a: null, b: null},  // the blend's ends: {code, input}
};

// --- talking to the server -------------------------------------------------------------

async function api(path, options = {}) {
  const started = performance.now();
  const response = await fetch(path, options);
  let body;
  try {
    body = await response.json();
  } catch {
    body = {error: `the server answered ${response.status} ${response.statusText}`};
  }
  if (!response.ok) throw new Error(body.error || response.statusText);
  body.roundTrip = performance.now() - started;
  return body;
}

function post(path, payload) {
  return api(path, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({run: state.run, label: state.label, ...payload}),
  });
}

function query(extra = {}) {
  const params = new URLSearchParams({run: state.run, ...extra});
  if (state.label !== null) params.set("label", state.label);
  return params.toString();
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function timing(answer) {
  return `${answer.ms.toFixed(1)} ms on the server, ${answer.roundTrip.toFixed(1)} ms round trip`;
}

// Slider moves come faster than answers: one request at a time, and when it returns only the
// newest of the moves made meanwhile is sent.
function newestOnly(work) {
  let running = false;
  let waiting = null;
  return (...args) => {
    waiting = args;
    if (running) return;
    running = true;
    (async () => {
      while (waiting) {
        const next = waiting;
        waiting = null;
        try {
          await work(...next);
          showError("");
        } catch (error) {
          showError(error.message);
        }
      }
      running = false;
    })();
  };
}

// --- the code: sliders, reset, random ----------------------------------------------------

const decode = newestOnly(async () => {
  const answer = await post("api/decode", {code: state.code});
  $("decoded").src = answer.image;
  $("decode-time").textContent = `decoded: ${timing(answer)}`;
});

function buildSliders() {
  const box = $("sliders");
  box.replaceChildren();
  for (const dim of state.info.dims) {
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `z${dim.index}`;
    name.title = `spread of the test codes: variance ${dim.variance.toFixed(3)}` +
      (dim.active ? "" : " (barely used)");
    const slider = document.createElement("input");
    slider.type = "range";
    slider.min = dim.low;
    slider.max = dim.high;
    slider.step = (dim.high - dim.low) / 400;
    slider.dataset.dim = dim.index;
    slider.setAttribute("aria-label", `code dimension ${dim.index}`);
    const value = document.createElement("span");
    value.className = "value";
    slider.addEventListener("input", () => {
      state.code[dim.index] = Number(slider.value);
      value.textContent = Number(slider.value).toFixed(2);
      drawMap();
      decode();
    });
    for (const part of [name, slider, value]) {
      if (!dim.active) part.classList.add("inactive");
      box.append(part);
    }
  }
}

function showCode() {
  for (const slider of $("sliders").querySelectorAll("input")) {
    const value = state.code[Number(slider.dataset.dim)];
    slider.value = value;
    slider.nextElementSibling.textContent = value.toFixed(2);
  }
  drawMap();
}

function setCode(code) {
  state.code = code.slice();
  showCode();
  decode();
}

$("reset").addEventListener("click", () => setCode(state.info.centre));

$("random").addEventListener("click", async () => {
  try {
    const answer = await post("api/random", {
      seed: state.seed++,
      temperature: Number($("temperature").value),
      sampler: $("sampler").value,
    });
    state.code = answer.code;
    showCode();
    $("decoded").src = answer.image;
    $("decode-time").textContent = `random code: ${timing(answer)}`;
    showError("");
  } catch (error) {
    showError(error.message);
  }
});

// --- the map of a 2-D code -------------------------------------------------------------

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

function mapBounds() {
  const [x, y] = [0, 1].map((index) => state.info.dims.find((dim) => dim.index === index));
  return {x0: x.low, x1: x.high, y0: y.low, y1: y.high};
}

function colourOf(label) {
  if (label === null || label === undefined) return "#888";
  if (state.info.classes || Number.isInteger(label)) return PALETTE[label % PALETTE.length];
  const level = Math.round(40 + 200 * Math.min(1, Math.max(0, label)));  // a moon's phase: dark new, bright full
  return `rgb(${level}, ${level}, ${Math.round(level * 0.7 + 60)})`;
}

function drawMap() {
  const map = state.info && state.info.map;
  if (!map) return;
  const canvas = $("map");
  const context = canvas.getContext("2d");
  const {x0, x1, y0, y1} = mapBounds();
  const px = (x) => (x - x0) / (x1 - x0) * canvas.width;
  const py = (y) => (1 - (y - y0) / (y1 - y0)) * canvas.height;
  context.fillStyle = "#111";
  context.fillRect(0, 0, canvas.width, canvas.height);
  map.codes.forEach(([x, y], i) => {
    context.fillStyle = colourOf(map.labels ? map.labels[i] : null);
    context.fillRect(px(x) - 1.5, py(y) - 1.5, 3, 3);
  });
  const [cx, cy] = [px(state.code[0]), py(state.code[1])];
  context.strokeStyle = "#fff";
  context.lineWidth = 1.5;
  context.beginPath();
  context.arc(cx, cy, 7, 0, 2 * Math.PI);
  context.moveTo(cx - 11, cy); context.lineTo(cx + 11, cy);
  context.moveTo(cx, cy - 11); context.lineTo(cx, cy + 11);
  context.stroke();
}

function pickOnMap(event) {
  if (event.type === "pointermove" && !event.buttons) return;
  const canvas = $("map");
  const box = canvas.getBoundingClientRect();
  const {x0, x1, y0, y1} = mapBounds();
  const fx = (event.clientX - box.left) / box.width;
  const fy = (event.clientY - box.top) / box.height;
  setCode([x0 + fx * (x1 - x0), y1 - fy * (y1 - y0)]);
}
$("map").addEventListener("pointerdown", pickOnMap);
$("map").addEventListener("pointermove", pickOnMap);

// --- blending two images ---------------------------------------------------------------

const blend = newestOnly(async () => {
  const {a, b} = state.ends;
  if (!a || !b) return;
  const t = Number($("t").value);
  const answer = await post("api/blend", {a: a.code, b: b.code, t, method: $("method").value});
  $("blend").src = answer.image;
  $("blend").dataset.t = t;
  $("blend-time").textContent = `decoded blend at ${t.toFixed(2)}: ${timing(answer)}`;
});

function showFade() {
  $("fade-b").style.opacity = $("t").value;  // B over A at opacity t: (1 - t)·A + t·B, pixel by pixel
  $("t-value").textContent = Number($("t").value).toFixed(2);
}

function setEnd(which, answer) {
  state.ends[which] = {code: answer.code, input: answer.input};
  const end = $(`end-${which}`);
  end.querySelector("img").src = answer.input;
  end.querySelector(".notes").textContent = answer.notes.join("; ");
  $(`fade-${which}`).src = answer.input;
  end.dataset.loaded = (Number(end.dataset.loaded || 0) + 1).toString();
  blend();
}

for (const which of ["a", "b"]) {
  const end = $(`end-${which}`);
  end.querySelector("input[type=file]").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      const answer = await api(`api/encode?${query()}`, {
        method: "POST",
        headers: {"X-File-Name": encodeURIComponent(file.name)},
        body: file,
      });
      setEnd(which, answer);
      showError("");
    } catch (error) {
      showError(error.message);
    }
  });
  end.querySelector(".use-test").addEventListener("click", () => useTestImage(which));
}

async function useTestImage(which) {
  const index = $(`end-${which}`).querySelector(".index").value;
  try {
    setEnd(which, await api(`api/test-image?${query({index})}`));
    showError("");
  } catch (error) {
    showError(error.message);
  }
}

$("t").addEventListener("input", () => { showFade(); blend(); });
$("method").addEventListener("change", () => blend());

// --- choosing a run --------------------------------------------------------------------

async function openRun(name) {
  state.run = name;
  state.info = await api(`api/model?${new URLSearchParams({run: name})}`);
  const info = state.info;
  $("run-info").textContent = `${info.dataset}, ${info.kind}, ${info.latent_dim}-d code, ` +
    `${info.image_size}×${info.image_size} images, ${info.test_images} test images`;
  $("label-choice").hidden = !info.conditional;
  state.label = info.conditional ? 0 : null;
  $("label").replaceChildren(...(info.conditional ? info.classes : []).map((name, index) => new Option(name, index)));
  $("map-panel").hidden = !info.map;
  $("map-colour").textContent = info.classes ? "class" : info.dataset === "moons" ? "phase (dark: new, bright: full)" : "label";
  for (const which of ["a", "b"]) {
    $(`end-${which}`).querySelector(".index").max = info.test_images - 1;
  }
  buildSliders();
  setCode(info.centre);
  state.ends = {a: null, b: null};
  await useTestImage("a");
  await useTestImage("b");
  document.body.dataset.run = name;
}

$("label").addEventListener("change", () => {
  state.label = Number($("label").value);
  decode();
  blend();
});

$("run").addEventListener("change", async () => {
  try {
    await openRun($("run").value);
    showError("");
  } catch (error) {
    showError(error.message);
  }
});

async function start() {
  try {
    const {runs, first} = await api("api/runs");
    if (!runs.length) throw new Error("no runs yet: train one with `vae train`");
    for (const run of runs) {
      $("run").append(new Option(`${run.name} (${run.dataset}, ${run.kind}, ${run.epochs} epochs)`, run.name));
    }
    $("run").value = first;
    showFade();
    await openRun(first);
  } catch (error) {
    showError(error.message);
  }
}

start();
