/* Updates a bulk job's progress page while the job runs (no build step). Texts come from
   the server (translated, costs formatted there); the page reloads when the job finishes. */
(function () {
  function register() {
    if (!window.wagtail || !window.wagtail.app || !window.StimulusModule) {
      return false;
    }
    class JobProgressController extends window.StimulusModule.Controller {
      static values = { url: String, running: Boolean, interval: { type: Number, default: 2000 } };
      static targets = [
        'bar', 'done', 'percent', 'succeeded', 'failed', 'skipped', 'queued', 'running',
        'cancelled', 'tokens', 'rate', 'eta', 'cost', 'status', 'statusTag', 'noWorker',
        'noWorkerMessage',
      ];

      connect() {
        if (this.runningValue) this.schedule();
      }

      disconnect() {
        clearTimeout(this.timer);
      }

      schedule() {
        this.timer = setTimeout(() => this.poll(), this.intervalValue);
      }

      set(name, value) {
        const has = `has${name.charAt(0).toUpperCase()}${name.slice(1)}Target`;
        if (this[has]) this[`${name}Target`].textContent = value;
      }

      async poll() {
        let data;
        try {
          const response = await fetch(this.urlValue, {
            headers: { Accept: 'application/json' },
            credentials: 'same-origin',
          });
          if (!response.ok) throw new Error(response.statusText);
          data = await response.json();
        } catch (e) {
          this.schedule();
          return;
        }
        const p = data.progress;
        const d = data.display;
        if (this.hasBarTarget) {
          this.barTarget.setAttribute('aria-valuenow', d.processed_percent);
          this.barTarget.setAttribute('aria-valuetext', d.summary);
          d.segments.forEach((segment) => {
            const el = this.barTarget.querySelector(`[data-segment="${segment.status}"]`);
            if (el) {
              el.style.width = `${segment.width}%`;
              el.title = `${segment.label}: ${segment.count}`;
            }
          });
        }
        this.set('done', d.processed);
        this.set('percent', d.processed_percent);
        ['succeeded', 'failed', 'skipped', 'queued', 'running', 'cancelled'].forEach((s) =>
          this.set(s, p.counts[s] || 0),
        );
        this.set('tokens', d.tokens);
        this.set('rate', d.rate);
        this.set('eta', d.eta);
        this.set('cost', d.cost);
        this.set('status', data.status);
        if (this.hasStatusTagTarget) {
          const tag = this.statusTagTarget.querySelector('.w-status');
          if (tag) tag.textContent = data.status_label;
        }
        if (this.hasNoWorkerTarget) {
          this.noWorkerTarget.hidden = !d.no_worker;
          this.set('noWorkerMessage', d.no_worker_message);
        }
        if (data.finished) {
          window.location.reload();
        } else {
          this.schedule();
        }
      }
    }
    window.wagtail.app.register('llm-job-progress', JobProgressController);
    return true;
  }
  if (!register()) {
    document.addEventListener('DOMContentLoaded', register, { once: true });
  }
})();
