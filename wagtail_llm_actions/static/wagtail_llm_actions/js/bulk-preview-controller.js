/* The bulk "Run LLM action" confirmation: refresh the preview when an option changes
   (no build step). Posts the form as "Check" does and swaps in the new preview and the
   Start button's state; the Check button stays as the fallback without JavaScript. */
(function () {
  function register() {
    if (!window.wagtail || !window.wagtail.app || !window.StimulusModule) {
      return false;
    }
    class BulkPreviewController extends window.StimulusModule.Controller {
      static targets = ['preview', 'start', 'check'];

      connect() {
        this.requests = 0;
        if (this.hasCheckTarget) this.checkTarget.hidden = true;
        // Nothing is preselected; a choice the browser restored (reload, Back) gets its
        // preview, so the preview always shows what Start would run.
        const chosen = this.element.querySelector('select[name=action], select[name=pipeline]');
        if (chosen && chosen.value && !this.previewTarget.querySelector('[data-llm-will-run]')) {
          this.refresh();
        }
      }

      async refresh() {
        const request = ++this.requests;
        const data = new FormData(this.element);
        data.set('preview', '1');
        this.previewTarget.setAttribute('aria-busy', 'true');
        if (this.hasStartTarget) this.startTarget.disabled = true;
        let html;
        try {
          // getAttribute: the form's "action" property is its <select name="action">
          const response = await fetch(this.element.getAttribute('action'), {
            method: 'POST',
            body: data,
            credentials: 'same-origin',
            headers: { 'X-Requested-With': 'XMLHttpRequest' },
          });
          if (!response.ok) throw new Error(response.statusText);
          html = await response.text();
        } catch (e) {
          // fall back to the full page round trip the Check button makes
          if (request === this.requests && this.hasCheckTarget) {
            this.element.requestSubmit(this.checkTarget);
          }
          return;
        }
        if (request !== this.requests) return; // a newer change is on its way
        const doc = new DOMParser().parseFromString(html, 'text/html');
        const preview = doc.querySelector('[data-llm-bulk-preview-target="preview"]');
        const start = doc.querySelector('[data-llm-bulk-preview-target="start"]');
        if (preview) this.previewTarget.innerHTML = preview.innerHTML;
        if (start && this.hasStartTarget) this.startTarget.disabled = start.disabled;
        this.previewTarget.removeAttribute('aria-busy');
        this.dispatch('refreshed');
      }
    }
    window.wagtail.app.register('llm-bulk-preview', BulkPreviewController);
    return true;
  }
  if (!register()) {
    document.addEventListener('DOMContentLoaded', register, { once: true });
  }
})();
