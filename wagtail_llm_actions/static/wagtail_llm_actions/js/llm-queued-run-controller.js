/* wagtail-llm-actions: the progress of a run queued from an admin screen ("llm-queued-run").
 *
 * Rerun, Rerun from step and Try on a page queue a job as the page editor's buttons do; this
 * controller polls the job's status (the editor's endpoint), shows "Waiting to start…" then
 * "Generating…" with the elapsed time, and Cancel. When the job ends it goes to the done
 * URL, which says what happened and shows the answer.
 */
(() => {
  'use strict';

  const POLL_FAST_MS = 300;
  const POLL_SLOW_MS = 1000;
  const MAX_NETWORK_FAILURES = 5;
  const FINAL = ['succeeded', 'failed', 'cancelled'];

  const csrfToken = (element) => {
    const input = element.querySelector('input[name="csrfmiddlewaretoken"]');
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : '';
  };

  const register = () => {
    if (!window.wagtail || !window.wagtail.app || !window.StimulusModule) return false;

    class QueuedRunController extends window.StimulusModule.Controller {
      static targets = ['status', 'message', 'elapsed', 'cancel'];

      static values = {
        statusUrl: String,
        cancelUrl: String,
        doneUrl: String,
        state: String,
        messagesId: String,
      };

      connect() {
        const script = document.getElementById(this.messagesIdValue);
        this.messages = script ? JSON.parse(script.textContent) : {};
        this.startedAt = performance.now();
        this.failures = 0;
        this.tick();
        this.clock = window.setInterval(() => this.tick(), 1000);
        this.check();
      }

      disconnect() {
        window.clearTimeout(this.timer);
        window.clearInterval(this.clock);
      }

      t(key, values = {}) {
        return String(this.messages[key] || key).replace(/\{(\w+)\}/g, (m, k) =>
          k in values ? String(values[k]) : m,
        );
      }

      tick() {
        if (!this.hasElapsedTarget) return;
        const seconds = Math.floor((performance.now() - this.startedAt) / 1000);
        this.elapsedTarget.textContent = this.t('elapsed', { seconds });
      }

      schedule() {
        const elapsed = performance.now() - this.startedAt;
        this.timer = window.setTimeout(
          () => this.check(),
          elapsed < 5000 ? POLL_FAST_MS : POLL_SLOW_MS,
        );
      }

      async check() {
        let data;
        try {
          const response = await fetch(this.statusUrlValue, {
            credentials: 'same-origin',
            headers: { Accept: 'application/json' },
          });
          data = await response.json();
          if (!response.ok && !data.state) throw new Error(data.message || response.statusText);
        } catch (error) {
          this.failures += 1;
          if (this.failures >= MAX_NETWORK_FAILURES) {
            this.messageTarget.textContent = this.t('network');
            return;
          }
          this.schedule();
          return;
        }
        this.failures = 0;
        this.element.dataset.llmQueuedRunState = data.state;
        if (FINAL.includes(data.state)) {
          this.end();
          return;
        }
        if (!this.cancelling) {
          let text = this.t('queued');
          if (data.state === 'running') text = this.t('running');
          if (data.state === 'stalled') text = this.t('stalled');
          if (this.messageTarget.textContent !== text) this.messageTarget.textContent = text;
        }
        this.schedule();
      }

      end() {
        window.clearTimeout(this.timer);
        window.clearInterval(this.clock);
        window.location.assign(this.doneUrlValue);
      }

      async cancel(event) {
        if (event) event.preventDefault();
        window.clearTimeout(this.timer);
        if (this.hasCancelTarget) this.cancelTarget.disabled = true;
        this.cancelling = true; // a call already made ends first; its answer is not saved
        this.messageTarget.textContent = this.t('cancelled');
        try {
          await fetch(this.cancelUrlValue, {
            method: 'POST',
            credentials: 'same-origin',
            headers: { 'X-CSRFToken': csrfToken(this.element), Accept: 'application/json' },
          });
        } catch (error) {
          // the status says what became of it
        }
        this.check();
      }
    }

    window.wagtail.app.register('llm-queued-run', QueuedRunController);
    return true;
  };
  if (!register()) document.addEventListener('DOMContentLoaded', register, { once: true });
})();
