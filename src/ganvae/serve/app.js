// ganvae explorer: vanilla JavaScript, talks only to the server that sent it.
"use strict";

const DIMS_PER_PAGE = 16;
let LIMITS = {};

async function fetchImage(url, options) {
  const r = await fetch(url, options);
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  const blob = await r.blob();
  return await new Promise((resolve, reject) => {
    const fr = new FileReader();
    fr.onload = () => resolve(fr.result);  // a data: URL, so equal images have equal src
    fr.onerror = () => reject(new Error("could not read the image"));
    fr.readAsDataURL(blob);
  });
}

class Panel {
  constructor(run) {
    this.run = run;
    this.offsets = new Map();   // dimension -> slider value
    this.errors = {};           // section -> message
    this.pending = {};          // section -> latest request number
    const node = document.getElementById("panel-template").content.firstElementChild.cloneNode(true);
    this.el = node;
    node.dataset.run = run.index;
    const q = (s) => node.querySelector(s);
    this.q = q;
    q(".name").textContent = run.name;
    q(".name").title = run.name;  // the server sends names only, never paths
    const bits = [run.model, run.family.toUpperCase(), run.data, run.step != null ? `step ${run.step}` : null,
                  `latent ${run.latent_dim}`, `${run.channels}×${run.image_size}×${run.image_size}`];
    q(".meta").textContent = bits.filter((b) => b != null).join(" · ");
    q(".n").max = LIMITS.max_n;
    q(".steps").max = LIMITS.max_steps;

    if (run.conditional) {
      q(".cls-label").hidden = false;
      const sel = q(".cls");
      sel.append(new Option(run.family === "vae" ? "choose…" : "random", ""));
      for (let k = 0; k < run.num_classes; k++) {
        const name = run.class_names ? `${k}: ${run.class_names[k]}` : String(k);
        sel.append(new Option(name, String(k)));
      }
      if (run.family === "vae") sel.value = "0";
    }
    if (run.reconstruct) q(".recon-section").hidden = false;
    if (run.translate) {  // translation runs draw nothing from noise: an upload panel instead of the samplers
      q(".gen-sections").hidden = true;
      q(".translate-section").hidden = false;
      for (const d of run.directions) q(".direction").append(new Option(d === "a2b" ? "A → B" : "B → A", d));
      q(".translate-upload").addEventListener("change", () => this.updateTranslate());
      q(".direction").addEventListener("change", () => this.updateTranslate());
    }

    const pages = q(".dim-page");
    for (let s = 0; s < run.latent_dim; s += DIMS_PER_PAGE) {
      const e = Math.min(run.latent_dim, s + DIMS_PER_PAGE) - 1;
      pages.append(new Option(`${s}–${e}`, String(s)));
    }
    this.buildSliders(0);

    q(".generate").addEventListener("click", () => this.refresh());
    q(".random-seed").addEventListener("click", () => {
      q(".seed").value = String(Math.floor(Math.random() * 1e9));
      this.refresh();
    });
    for (const s of [".seed", ".n", ".cls", ".psi"]) q(s).addEventListener("change", () => this.refresh());
    q(".seed").addEventListener("keydown", (e) => { if (e.key === "Enter") this.refresh(); });
    pages.addEventListener("change", () => this.buildSliders(Number(pages.value)));
    q(".reset").addEventListener("click", () => {
      this.offsets.clear();
      this.buildSliders(Number(pages.value));
      this.updateTraverse();
    });
    q(".interp-go").addEventListener("click", () => this.updateInterp());
    for (const s of [".seed-a", ".seed-b", ".steps"]) q(s).addEventListener("change", () => this.updateInterp());
    q(".upload").addEventListener("change", () => this.updateRecon());
  }

  buildSliders(start) {
    const box = this.q(".sliders");
    box.textContent = "";
    const end = Math.min(this.run.latent_dim, start + DIMS_PER_PAGE);
    for (let k = start; k < end; k++) {
      const label = document.createElement("span");
      label.textContent = `z${k}`;
      const input = document.createElement("input");
      Object.assign(input, { type: "range", min: "-3", max: "3", step: "0.1", className: "slider" });
      input.dataset.dim = String(k);
      input.value = String(this.offsets.get(k) || 0);
      const v = document.createElement("span");
      v.className = "v";
      v.textContent = Number(input.value).toFixed(1);
      input.addEventListener("input", () => {
        const x = Number(input.value);
        if (x === 0) this.offsets.delete(k); else this.offsets.set(k, x);
        v.textContent = x.toFixed(1);
        this.updateTraverse();
      });
      box.append(label, input, v);
    }
  }

  params(extra) {
    const p = new URLSearchParams(extra);
    const cls = this.q(".cls").value;
    if (this.run.conditional && cls !== "") p.set("cls", cls);
    return p;
  }

  showErrors() {  // one line per distinct message, naming the sections it came from
    const bySection = new Map();
    for (const [section, msg] of Object.entries(this.errors)) {
      if (msg) bySection.set(msg, [...(bySection.get(msg) || []), section]);
    }
    this.q(".error").textContent = [...bySection].map(([msg, s]) => `${s.join(", ")}: ${msg}`).join("\n");
  }

  // One request per section at a time: a newer one supersedes the older's result.
  async load(section, img, url, options) {
    const ticket = (this.pending[section] || 0) + 1;
    this.pending[section] = ticket;
    img.classList.add("busy");
    try {
      const src = await fetchImage(url, options);
      if (this.pending[section] !== ticket) return;
      img.src = src;
      this.errors[section] = "";
    } catch (e) {
      if (this.pending[section] !== ticket) return;
      this.errors[section] = e.message;
    } finally {
      if (this.pending[section] === ticket) img.classList.remove("busy");
      this.showErrors();
    }
  }

  base() { return `/api/run/${this.run.index}`; }

  updateGrid() {
    const p = this.params({ seed: this.q(".seed").value.trim(), n: this.q(".n").value.trim(),
                            psi: this.q(".psi").value.trim() });
    return this.load("samples", this.q("img.grid"), `${this.base()}/grid.png?${p}`);
  }

  // Dragging a slider fires many events: at most one request in flight, then one more with the latest values.
  updateTraverse() {
    if (this.traverseInFlight) {
      this.traverseAgain = true;
      return this.traverseInFlight;
    }
    const dims = [...this.offsets].map(([k, v]) => `${k}:${v}`).join(",");
    const p = this.params({ seed: this.q(".seed").value.trim(), dims });
    this.traverseInFlight = this.load("sliders", this.q("img.traverse"), `${this.base()}/traverse.png?${p}`)
      .finally(() => {
        this.traverseInFlight = null;
        if (this.traverseAgain) {
          this.traverseAgain = false;
          this.updateTraverse();
        }
      });
    return this.traverseInFlight;
  }

  updateInterp() {
    if (this.run.translate) return Promise.resolve();
    const p = this.params({ a: this.q(".seed-a").value.trim(), b: this.q(".seed-b").value.trim(),
                            steps: this.q(".steps").value.trim() });
    return this.load("interpolation", this.q("img.interp"), `${this.base()}/interpolate.png?${p}`);
  }

  updateRecon() {
    const file = this.q(".upload").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("image", file);
    const cls = this.q(".cls").value;
    if (this.run.conditional && cls !== "") form.append("cls", cls);
    return this.load("reconstruction", this.q("img.recon"), `${this.base()}/reconstruct`,
                     { method: "POST", body: form });
  }

  updateTranslate() {
    const file = this.q(".translate-upload").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("image", file);
    const p = new URLSearchParams({ direction: this.q(".direction").value || "a2b" });
    return this.load("translation", this.q("img.translated"), `${this.base()}/translate?${p}`,
                     { method: "POST", body: form });
  }

  refresh() {
    if (this.run.translate) return Promise.resolve();
    return Promise.all([this.updateGrid(), this.updateTraverse()]);
  }
}

async function main() {
  const runsBox = document.getElementById("runs");
  try {
    const r = await fetch("/api/runs");
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    LIMITS = body.limits;
    document.getElementById("summary").textContent =
      `${body.runs.length} run${body.runs.length === 1 ? "" : "s"}: ${body.runs.map((x) => x.name).join(", ")}`;
    const panels = body.runs.map((run) => new Panel(run));
    for (const p of panels) runsBox.append(p.el);
    await Promise.all(panels.map((p) => Promise.all([p.refresh(), p.updateInterp()])));
    document.body.dataset.ready = "1";
  } catch (e) {
    document.getElementById("global-error").textContent = `could not load the runs: ${e.message}`;
  }
}

main();
