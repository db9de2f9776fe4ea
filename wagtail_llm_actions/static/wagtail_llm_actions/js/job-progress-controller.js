/* Updates a bulk job's progress page while the job runs (no build step). */
(function () {
  function register() {
    if (!window.wagtail || !window.wagtail.app || !window.StimulusModule) {
      return false;
    }
    class JobProgressController extends window.StimulusModule.Controller {
      static values = { url: String, running: Boolean, interval: { type: Number, default: 2000 } };
      static targets = [
        'bar', 'done', 'percent', 'succeeded', 'failed', 'skipped', 'queued', 'running',
        'cancelled', 'tokens', 'rate', 'eta', 'cost', 'status',
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
        if (this.hasBarTarget) this.barTarget.value = p.percent;
        this.set('done', p.done);
        this.set('percent', p.percent);
        ['succeeded', 'failed', 'skipped', 'queued', 'running', 'cancelled'].forEach((s) =>
          this.set(s, p.counts[s] || 0),
        );
        this.set('tokens', p.tokens.toLocaleString());
        if (p.rate) this.set('rate', `${p.rate.toFixed(2)} pages/s`);
        if (p.eta !== null && p.eta !== undefined) this.set('eta', `~${Math.round(p.eta)} s`);
        if (p.cost !== null) this.set('cost', `$${Number(p.cost).toFixed(4)}`);
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
