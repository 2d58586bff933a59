// The demo page's client. Everything it shows comes from the public API (docs/design.md, "HTTP"):
// GET /v1/model names the model and its labels; POST /predict (multipart/form-data, field `file`) gives
// the ranked actions, the clip pairs and the timing; every error body is {"error": {"code", "message"}}.
// With an API key configured the API answers 401 and the page asks for the key, then sends it as
// `Authorization: Bearer <key>`. The key stays in this page's memory only.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const page = {
    model: $("model"),
    keyForm: $("key-form"),
    keyReason: $("key-reason"),
    keyInput: $("api-key"),
    dropZone: $("drop-zone"),
    file: $("file"),
    progress: $("progress"),
    status: $("status"),
    error: $("error"),
    result: $("result"),
    topLabel: $("top-label"),
    topScore: $("top-score"),
    predictions: $("predictions"),
    video: $("video"),
    videoNote: $("video-note"),
    timeline: $("timeline"),
    videoFacts: $("video-facts"),
    timing: $("timing"),
    curl: $("curl"),
  };

  // Okabe-Ito's colours (told apart with the common colour-vision deficiencies), then a few more; the
  // label is always written beside its colour, so nothing depends on telling colours apart.
  const PALETTE = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9",
    "#d55e00", "#f0e442", "#332288", "#999999", "#882255",
  ];
  // At most this many ranked actions are asked for (the model may have many classes).
  const MAX_RANKED = 10;

  let apiKey = null;
  let labels = [];         // the model's labels (GET /v1/model): a label's colour follows its index
  const seenLabels = [];   // labels met before the model's list was known
  let pendingFile = null;  // the file of the last upload, sent again once a key is given
  let objectUrl = null;
  let busy = false;

  function authHeaders() {
    return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  }

  // The envelope's message, or what went wrong when the answer has none.
  function errorMessage(status, text) {
    try {
      const body = JSON.parse(text);
      if (body && body.error && typeof body.error.message === "string") {
        return body.error.message;
      }
    } catch (_) {
      // not JSON: a proxy's page, or nothing at all
    }
    return status ? `the server answered HTTP ${status}` : "the server could not be reached";
  }

  function setStatus(text) {
    page.status.textContent = text;
  }

  function showError(message) {
    page.error.textContent = message;
    page.error.hidden = false;
  }

  function clearError() {
    page.error.textContent = "";
    page.error.hidden = true;
  }

  function askForKey(message) {
    page.keyReason.textContent = `The API answered “${message}”: enter its API key.`;
    page.keyForm.hidden = false;
    page.keyInput.focus();
  }

  function colourOf(label) {
    let index = labels.indexOf(label);
    if (index < 0) {
      if (!seenLabels.includes(label)) seenLabels.push(label);
      index = labels.length + seenLabels.indexOf(label);
    }
    return PALETTE[index % PALETTE.length];
  }

  function seconds(value) {
    return `${value.toFixed(2)} s`;
  }

  function milliseconds(value) {
    return `${Math.round(value)} ms`;
  }

  // ------------------------------------------------------------------------------- GET /v1/model
  async function loadModel() {
    let response;
    try {
      response = await fetch("/v1/model", { headers: authHeaders() });
    } catch (_) {
      page.model.textContent = "Model: the server could not be reached";
      return false;
    }
    const text = await response.text();
    if (response.status === 401) {
      page.model.textContent = "Model: the API needs a key";
      askForKey(errorMessage(401, text));
      return false;
    }
    if (response.status === 503) {  // still loading: retry when the server says
      const wait = Number(response.headers.get("Retry-After")) || 1;
      page.model.textContent = `Model: ${errorMessage(503, text)}`;
      setTimeout(loadModel, wait * 1000);
      return false;
    }
    if (!response.ok) {
      page.model.textContent = `Model: ${errorMessage(response.status, text)}`;
      return false;
    }
    const model = JSON.parse(text);
    labels = model.labels;
    page.keyForm.hidden = true;
    page.model.textContent =
      `Model: ${model.name} ${model.version} (preset ${model.preset}, ${model.num_classes} actions, ` +
      `${model.form} graph on ${model.providers.join(", ")})`;
    return true;
  }

  // ------------------------------------------------------------------------------ POST /predict
  function predictQuery() {
    return labels.length ? `?top_k=${Math.min(labels.length, MAX_RANKED)}` : "";
  }

  function predict(file) {
    if (!file) return;
    if (busy) {
      setStatus(`Still waiting for the answer about ${pendingFile.name}; drop ${file.name} again after it.`);
      return;
    }
    busy = true;
    pendingFile = file;
    clearError();
    page.result.hidden = true;
    page.progress.hidden = false;
    page.progress.value = 0;
    setStatus(`Uploading ${file.name}: 0 %`);

    const query = predictQuery();
    const started = performance.now();
    const request = new XMLHttpRequest();
    request.open("POST", `/predict${query}`);
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);

    let announced = 0;  // the status (read out by screen readers) moves in steps of 10 %
    request.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.floor((100 * event.loaded) / event.total);
      page.progress.value = percent;
      if (percent >= announced + 10) {
        announced = percent - (percent % 10);
        setStatus(`Uploading ${file.name}: ${announced} %`);
      }
    });
    request.upload.addEventListener("load", () => {
      page.progress.removeAttribute("value");  // indeterminate: the server decodes and scores now
      setStatus(`Analysing ${file.name}…`);
    });
    request.addEventListener("load", () => {
      busy = false;
      page.progress.hidden = true;
      const elapsed = performance.now() - started;
      if (request.status !== 401) pendingFile = null;
      if (request.status === 200) {
        setStatus(`Done: ${file.name}`);  // the result's heading and top label follow it
        showResult(JSON.parse(request.responseText), file, query, elapsed);
        return;
      }
      const message = errorMessage(request.status, request.responseText);
      if (request.status === 401) {
        setStatus("The API needs a key: the video is sent again once it is given.");
        askForKey(message);
        return;
      }
      setStatus(`Failed: ${file.name}`);
      showError(message);
    });
    request.addEventListener("error", () => {
      busy = false;
      pendingFile = null;
      page.progress.hidden = true;
      setStatus(`Failed: ${file.name}`);
      showError(errorMessage(0, ""));
    });

    const form = new FormData();
    form.append("file", file, file.name);
    request.send(form);
  }

  // ------------------------------------------------------------------------------------ result
  function showResult(body, file, query, elapsed) {
    const top = body.predictions[0];
    page.topLabel.textContent = top.label;
    page.topScore.textContent = `(score ${top.score.toFixed(3)})`;

    page.predictions.replaceChildren(...body.predictions.map(rankedAction));
    showVideo(file);
    showTimeline(body.clips, body.video.duration_s);

    const video = body.video;
    page.videoFacts.textContent =
      `${seconds(video.duration_s)}, ${video.width}×${video.height}, ${video.fps.toFixed(2)} fps, ` +
      `${video.codec}; ${body.clips.length} clip pairs, ${body.fusion} fusion.`;
    const timing = body.timing_ms;
    page.timing.textContent =
      `Server: decode ${milliseconds(timing.decode)}, inference ${milliseconds(timing.infer)}, ` +
      `total ${milliseconds(timing.total)} (upload included). ` +
      `In the browser, from the first byte sent to the answer: ${milliseconds(elapsed)}.`;
    const key = apiKey ? ' -H "Authorization: Bearer $FSTCN_API_KEY"' : "";
    const name = file.name.replace(/["\\$`]/g, "\\$&");
    page.curl.textContent = `curl -s${key} -F "file=@${name}" "${location.origin}/predict${query}"`;
    page.result.hidden = false;
  }

  function rankedAction(prediction) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = prediction.label;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${Math.max(0, Math.min(1, prediction.score)) * 100}%`;
    fill.style.backgroundColor = colourOf(prediction.label);
    bar.append(fill);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = prediction.score.toFixed(3);
    item.append(label, bar, score);
    return item;
  }

  function showVideo(file) {
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(file);
    page.videoNote.hidden = true;
    page.video.src = objectUrl;
    page.video.play().catch(() => {
      // autoplay refused or the format unplayable here: the controls and the 'error' event cover both
    });
  }

  // One row per clip pair: its span of the video as a bar on the video's time axis, coloured by the
  // pair's label and labelled in text; choosing a row plays the video from the pair's start.
  function showTimeline(clips, duration) {
    const end = Math.max(duration || 0, ...clips.map((clip) => clip.end_s)) || 1;
    page.timeline.replaceChildren(
      ...clips.map((clip, index) => {
        const item = document.createElement("li");
        const segment = document.createElement("button");
        segment.type = "button";
        segment.className = "segment";
        segment.dataset.testid = "timeline-segment";
        segment.dataset.start = String(clip.start_s);
        segment.dataset.end = String(clip.end_s);
        segment.setAttribute(
          "aria-label",
          `Clip pair ${index + 1}: ${clip.label}, score ${clip.score.toFixed(2)}, ` +
            `from ${seconds(clip.start_s)} to ${seconds(clip.end_s)}; play from its start`,
        );
        const text = document.createElement("span");
        text.className = "segment-text";
        text.textContent = `${clip.start_s.toFixed(2)}–${seconds(clip.end_s)} ${clip.label} ${clip.score.toFixed(2)}`;
        const track = document.createElement("span");
        track.className = "track";
        const span = document.createElement("span");
        span.className = "span";
        span.style.left = `${(100 * clip.start_s) / end}%`;
        span.style.width = `${Math.max(0.5, (100 * (clip.end_s - clip.start_s)) / end)}%`;
        span.style.backgroundColor = colourOf(clip.label);
        track.append(span);
        segment.append(text, track);
        segment.addEventListener("click", () => {
          page.video.currentTime = clip.start_s;
          page.video.play().catch(() => {});
        });
        item.append(segment);
        return item;
      }),
    );
  }

  // The rows whose span holds the playing time are marked (bold text and outline, not colour only).
  page.video.addEventListener("timeupdate", () => {
    const now = page.video.currentTime;
    for (const segment of page.timeline.querySelectorAll(".segment")) {
      const playing = now >= Number(segment.dataset.start) && now <= Number(segment.dataset.end);
      segment.classList.toggle("playing", playing);
    }
  });
  page.video.addEventListener("error", () => {
    if (page.video.getAttribute("src")) page.videoNote.hidden = false;
  });

  // ------------------------------------------------------------------------------------ inputs
  page.file.addEventListener("change", () => {
    const file = page.file.files[0];
    predict(file);
  });
  page.dropZone.addEventListener("click", () => page.file.click());
  page.dropZone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      page.file.click();
    }
  });
  page.dropZone.addEventListener("dragover", (event) => {
    event.preventDefault();
    page.dropZone.classList.add("dragging");
  });
  page.dropZone.addEventListener("dragleave", () => page.dropZone.classList.remove("dragging"));
  page.dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    page.dropZone.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) predict(file);
  });
  // A file dropped beside the zone must not replace the page with the video.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  page.keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    apiKey = page.keyInput.value;
    page.keyReason.textContent = "Checking the key…";
    clearError();
    if ((await loadModel()) && pendingFile) predict(pendingFile);
  });

  loadModel();
})();
