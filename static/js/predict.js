// Predict form: warn (never block) when a value is outside the model's typical range, and
// disable the button after the first submit so a double click sends one request.
document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("input[data-typical-min]")) {
    const warning = input.closest(".field").querySelector("[data-range-warning]");
    const check = () => {
      const value = Number.parseFloat(input.value);
      const low = Number.parseFloat(input.dataset.typicalMin);
      const high = Number.parseFloat(input.dataset.typicalMax);
      const unit = input.dataset.unit ? ` ${input.dataset.unit}` : "";
      if (input.value !== "" && Number.isFinite(value) && (value < low || value > high)) {
        warning.textContent = `Outside the typical range (${low} to ${high}${unit}); the result will be flagged.`;
        warning.hidden = false;
      } else {
        warning.hidden = true;
      }
    };
    input.addEventListener("input", check);
    check();
  }
  // A site picked from the search fills the place fields with its values (the options carry
  // them); the analyst may still change any of them for this prediction.
  const site = document.querySelector("input[list=site-options]");
  if (site) {
    site.addEventListener("change", () => {
      const options = document.querySelectorAll("#site-options option");
      const picked = Array.from(options).find((option) => option.value === site.value);
      if (!picked) return;
      const values = JSON.parse(picked.dataset.features || "{}");
      for (const [name, value] of Object.entries(values)) {
        const field = document.querySelector(`[name="${CSS.escape(name)}"]`);
        if (field) {
          field.value = String(value);
          field.dispatchEvent(new Event("input"));
        }
      }
    });
  }
  for (const form of document.querySelectorAll("form[data-once]")) {
    form.addEventListener("submit", () => {
      for (const button of form.querySelectorAll("button[type=submit]")) {
        button.disabled = true;
        button.textContent = "Working…";
      }
    });
  }
});
