// The job view of aipg-mcp: shows one job (images, video, audio, text) as it stands and acts on
// it through the host. Everything it shows comes from the tool result the host hands over, the
// job's record (aipg://jobs/{id}) and its saved files (aipg://images|video|audio/...), read
// through the host one at a time; it never adds to the model's context.
import {
  App,
  applyDocumentTheme,
  applyHostFonts,
  applyHostStyleVariables,
} from "@modelcontextprotocol/ext-apps";

// Seconds each get_status call waits: hosts give a view's request about 60 s at most.
const POLL_WAIT_SECONDS = 3;
const MAX_POLL_FAILURES = 5;
const RUNNING = new Set(["queued", "processing"]);
const NOUNS = { text: "Text", image: "Image", caption: "Caption", video: "Video", audio: "Audio", "3d": "3D mesh" };

const $ = (id) => document.getElementById(id);
const view = {
  report: null, // the job's JobReport (the tool result's structuredContent)
  record: null, // the job's ledger record, for its prompt and parameters
  input: {}, // the arguments of the tool call the host showed this view for
  selected: null, // the id of the chosen image or media item
  files: new Map(), // resource uri -> data: URL, or "" while it loads
  polling: false,
  busy: false,
  stopped: false,
};

const app = new App({ name: "aipg-job-view", version: "1.0.0" }, {}, { autoResize: true });
app.ontoolinput = (params) => {
  view.input = params.arguments || {};
  render();
};
app.ontoolresult = (result) => accept(result);
app.ontoolcancelled = () => fail("The tool call was cancelled.");
app.onhostcontextchanged = (context) => styleFrom(context);
app.onteardown = async () => {
  view.stopped = true;
  return {};
};

for (const [id, act] of [
  ["vary", vary],
  ["reprompt", openReprompt],
  ["reprompt-close", closeReprompt],
  ["upscale", upscale],
  ["download", download],
  ["cancel", cancel],
]) {
  $(id).addEventListener("click", act);
}
// No <form> submission: hosts sandbox the view, and without allow-forms a form never submits.
$("reprompt-go").addEventListener("click", reprompt);
$("reprompt-form").addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeReprompt();
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    reprompt();
  }
});

app.connect().then(
  () => styleFrom(app.getHostContext() || {}),
  (error) => fail(`Could not reach the host: ${error.message || error}`),
);

function styleFrom(context) {
  if (context.theme) applyDocumentTheme(context.theme);
  if (context.styles?.variables) applyHostStyleVariables(context.styles.variables);
  if (context.styles?.css?.fonts) applyHostFonts(context.styles.css.fonts);
}

// A tool result (from the host, or from this view's own calls): show the job it reports.
function accept(result) {
  if (!result || result.isError) {
    fail(textOf(result) || "The call failed.");
    return;
  }
  const report = result.structuredContent;
  if (!report || !report.job_id) {
    fail(textOf(result) || "This result names no job.");
    return;
  }
  const another = !view.report || view.report.job_id !== report.job_id;
  view.report = report;
  if (another) {
    view.record = null;
    view.selected = null;
    loadRecord(report.job_id);
  }
  fail("");
  render();
  loadFiles();
  follow();
}

function textOf(result) {
  return (result?.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
}

async function loadRecord(jobId) {
  try {
    const read = await app.readServerResource({ uri: `aipg://jobs/${jobId}` });
    const record = JSON.parse(read.contents[0].text);
    if (view.report?.job_id === jobId) {
      view.record = record;
      render();
    }
  } catch {
    // A job this server did not start has no record: it is shown without actions.
  }
}

// Every saved file of the job, in order, one read at a time.
let loading = false;
async function loadFiles() {
  if (loading) return;
  loading = true;
  try {
    for (;;) {
      const next = items().find((item) => item.resource_uri && !view.files.has(item.resource_uri));
      if (!next || view.stopped) break;
      const uri = next.resource_uri;
      view.files.set(uri, "");
      try {
        const read = await app.readServerResource({ uri });
        const file = read.contents[0];
        view.files.set(uri, `data:${file.mimeType || next.mime_type || "image/webp"};base64,${file.blob}`);
      } catch (error) {
        view.files.set(uri, `error:${error.message || error}`);
      }
      render();
      await new Promise((resolve) => requestAnimationFrame(resolve));
    }
  } finally {
    loading = false;
  }
}

// While the job runs, ask for it again with short waits until it is done.
async function follow() {
  if (view.polling) return;
  view.polling = true;
  let failures = 0;
  try {
    while (!view.stopped && view.report && RUNNING.has(view.report.state)) {
      const { job_id, kind } = view.report;
      let result;
      try {
        result = await app.callServerTool({
          name: "get_status",
          arguments: { job_id, kind, wait_seconds: POLL_WAIT_SECONDS, inline_previews: false },
        });
      } catch (error) {
        if (++failures >= MAX_POLL_FAILURES) {
          fail(`Stopped following the job: ${error.message || error}`);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, POLL_WAIT_SECONDS * 1000));
        continue;
      }
      failures = 0;
      if (view.report?.job_id === job_id) accept(result);
    }
  } finally {
    view.polling = false;
  }
}

function items() {
  const report = view.report;
  return report ? [...(report.images || []), ...(report.media || [])] : [];
}

function prompt() {
  return view.record?.params?.prompt ?? view.input.prompt ?? "";
}

function chosen() {
  const all = items().filter((item) => !item.faulted);
  return all.find((item) => item.id === view.selected) || all[0] || null;
}

function render() {
  const report = view.report;
  $("job").setAttribute("aria-busy", String(!report));
  if (!report) return;
  $("job").dataset.job = report.job_id;
  const noun = NOUNS[report.kind] || report.kind;
  $("title").textContent = `${noun} job`;
  $("status").textContent = describeState(report);
  const text = prompt();
  $("prompt").hidden = !text;
  $("prompt").textContent = text;
  renderGallery(report.images || []);
  renderMedia(report.media || []);
  renderTexts(report);
  renderActions(report);
}

function describeState(report) {
  const parts = [report.state];
  if (RUNNING.has(report.state)) {
    if (report.queue_position) parts.push(`queue position ${report.queue_position}`);
    if (report.eta_seconds) parts.push(`about ${report.eta_seconds} s left`);
    if (report.finished) parts.push(`${report.finished} finished`);
  }
  if (report.kudos) parts.push(`${report.kudos} kudos`);
  const warnings = (report.warnings || []).join(" ");
  return parts.join(" · ") + (warnings ? ` — ${warnings}` : "");
}

function facts(item) {
  const parts = [];
  if (item.seed) parts.push(`seed ${item.seed}`);
  if (item.model) parts.push(item.model);
  if (item.worker) parts.push(`worker ${item.worker}`);
  if (item.width && item.height) parts.push(`${item.width}×${item.height}`);
  if (item.seconds) parts.push(`${item.seconds} s`);
  if (item.censored) parts.push("censored by the worker's filter");
  if (item.error) parts.push(item.error);
  return parts.join(" · ");
}

function renderGallery(images) {
  const gallery = $("gallery");
  gallery.hidden = images.length === 0;
  const ids = images.map((image) => image.id).join(" ");
  if (gallery.dataset.ids !== ids) {
    gallery.replaceChildren(...images.map((image, i) => galleryItem(image, i, images.length)));
    gallery.dataset.ids = ids;
  }
  const current = chosen();
  images.forEach((image, i) => {
    const entry = gallery.children[i];
    const pick = entry.querySelector(".pick");
    pick.setAttribute("aria-pressed", String(current?.id === image.id));
    entry.querySelector(".facts").textContent = facts(image);
    const src = view.files.get(image.resource_uri);
    const shown = pick.querySelector("img");
    if (shown) {
      shown.alt = altText(i, images.length);
    } else if (src && src.startsWith("data:")) {
      const img = document.createElement("img");
      img.src = src;
      img.alt = altText(i, images.length);
      if (image.width && image.height) {
        img.width = image.width;
        img.height = image.height;
      }
      pick.replaceChildren(img);
    } else if (src && src.startsWith("error:")) {
      pick.querySelector(".placeholder").textContent = `Could not read the image: ${src.slice(6)}`;
    }
  });
}

function altText(i, count) {
  const text = prompt().trim() || "Generated image";
  const short = text.length > 180 ? `${text.slice(0, 177)}…` : text;
  return count > 1 ? `${short} (image ${i + 1} of ${count})` : short;
}

function galleryItem(image, i, count) {
  const entry = document.createElement("li");
  const figure = document.createElement("figure");
  const pick = document.createElement("button");
  pick.type = "button";
  pick.className = "pick";
  pick.setAttribute("aria-label", `Choose image ${i + 1} of ${count}`);
  const placeholder = document.createElement("div");
  placeholder.className = "placeholder";
  placeholder.textContent = image.faulted ? "Not saved" : image.resource_uri ? "Loading…" : "Not saved";
  if (image.width && image.height) placeholder.style.aspectRatio = `${image.width} / ${image.height}`;
  pick.append(placeholder);
  pick.addEventListener("click", () => {
    view.selected = image.id;
    render();
  });
  const caption = document.createElement("figcaption");
  caption.className = "facts";
  figure.append(pick, caption);
  entry.append(figure);
  return entry;
}

function renderMedia(media) {
  const box = $("media");
  box.hidden = media.length === 0;
  const ids = media.map((item) => `${item.id}:${view.files.get(item.resource_uri) ? "1" : "0"}`).join(" ");
  if (box.dataset.ids === ids) return;
  box.dataset.ids = ids;
  box.replaceChildren(
    ...media.map((item) => {
      const figure = document.createElement("figure");
      const src = view.files.get(item.resource_uri);
      const tag = { video: "video", audio: "audio" }[item.kind];
      if (tag && src && src.startsWith("data:")) {
        const player = document.createElement(tag);
        player.controls = true;
        player.src = src;
        player.setAttribute("aria-label", `${NOUNS[item.kind]}: ${prompt() || item.id}`);
        figure.append(player);
      }
      const caption = document.createElement("figcaption");
      caption.className = "facts";
      caption.textContent = `${NOUNS[item.kind] || item.kind}: ${facts(item) || item.id}`;
      figure.append(caption);
      return figure;
    }),
  );
}

function renderTexts(report) {
  const box = $("texts");
  const texts = (report.texts || []).map((item) => [item.text, facts(item)]);
  for (const caption of report.captions || []) {
    const found = caption.result?.[caption.form];
    texts.push([found == null ? caption.state : typeof found === "string" ? found : JSON.stringify(found), caption.form]);
  }
  box.hidden = texts.length === 0;
  const key = JSON.stringify(texts);
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(
    ...texts.flatMap(([text, about]) => {
      const body = document.createElement("pre");
      body.className = "text";
      body.textContent = text;
      const note = document.createElement("p");
      note.className = "facts";
      note.textContent = about;
      return about ? [body, note] : [body];
    }),
  );
}

function renderActions(report) {
  const record = view.record;
  const params = record?.params || {};
  const rerunnable =
    record && ["text", "image", "video", "audio"].includes(report.kind) && !params.source_image;
  const done = report.state === "done";
  const item = chosen();
  const capabilities = app.getHostCapabilities() || {};
  const focused = document.activeElement;
  const show = {
    vary: rerunnable && done,
    reprompt: rerunnable && done && Boolean(item?.seed),
    upscale: rerunnable && done && report.kind === "image" && record.api === "v2" && Boolean(item),
    download: done && Boolean(item?.resource_uri) && Boolean(capabilities.downloadFile),
    cancel: RUNNING.has(report.state),
  };
  for (const [id, visible] of Object.entries(show)) {
    $(id).hidden = !visible;
    // aria-disabled, not disabled: a disabled button would drop the keyboard focus.
    $(id).setAttribute("aria-disabled", String(view.busy));
  }
  const which = (report.images || []).length > 1 && item ? ` (image ${(report.images || []).indexOf(item) + 1})` : "";
  $("upscale").textContent = `Upscale ×2${which}`;
  $("reprompt").textContent = `Same seed, new prompt${which}`;
  $("download").textContent = `Download${which}`;
  if (!show.reprompt) closeReprompt();
  $("actions").hidden = !Object.values(show).some(Boolean);
  // A keyboard user whose button went away (Cancel, once cancelled) keeps the focus in the view.
  if (focused && focused !== document.body && focused.closest("[hidden]")) $("status").focus();
}

async function act(name, args) {
  if (view.busy) return;
  view.busy = true;
  render();
  // A new job's prompt until its record arrives (the host's tool input was the first job's).
  const next = { prompt: args.prompt ?? prompt() };
  try {
    const result = await app.callServerTool({ name, arguments: args });
    if (result?.structuredContent?.job_id !== view.report?.job_id) view.input = next;
    accept(result);
  } catch (error) {
    fail(error.message || String(error));
  } finally {
    view.busy = false;
    render();
  }
}

function vary() {
  return act("rerun_job", { job_id: view.report.job_id, wait_seconds: 0 });
}

function upscale() {
  return act("rerun_job", {
    job_id: view.report.job_id,
    image_id: chosen().id,
    upscale: true,
    wait_seconds: 0,
  });
}

function cancel() {
  return act("cancel_job", { job_id: view.report.job_id, kind: view.report.kind, inline_previews: false });
}

function openReprompt() {
  $("reprompt-form").hidden = false;
  $("reprompt").setAttribute("aria-expanded", "true");
  $("new-prompt").value = prompt();
  $("new-prompt").focus();
}

function closeReprompt() {
  if ($("reprompt-form").hidden) return;
  $("reprompt-form").hidden = true;
  $("reprompt").setAttribute("aria-expanded", "false");
  if (!$("reprompt").hidden) $("reprompt").focus();
}

function reprompt() {
  if (view.busy) return;
  const text = $("new-prompt").value.trim();
  if (!text) return;
  const item = chosen();
  const args = { job_id: view.report.job_id, prompt: text, wait_seconds: 0 };
  if (view.report.kind === "image") args.image_id = item.id;
  else args.seed = item.seed;
  closeReprompt();
  return act("rerun_job", args);
}

async function download() {
  const item = chosen();
  const extension = (item.mime_type || "image/webp").split("/")[1];
  try {
    const answer = await app.downloadFile({
      contents: [
        {
          type: "resource_link",
          uri: item.resource_uri,
          name: `${view.report.job_id}-${item.id}.${extension}`,
          mimeType: item.mime_type || "image/webp",
        },
      ],
    });
    if (answer?.isError) fail("The host did not save the file.");
  } catch (error) {
    fail(error.message || String(error));
  }
}

function fail(message) {
  $("error").textContent = message;
}
