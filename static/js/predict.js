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
  for (const form of document.querySelectorAll("form[data-once]")) {
    form.addEventListener("submit", () => {
      for (const button of form.querySelectorAll("button[type=submit]")) {
        button.disabled = true;
        button.textContent = "Working…";
      }
    });
  }
});
