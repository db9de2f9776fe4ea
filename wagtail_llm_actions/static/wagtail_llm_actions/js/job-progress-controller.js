/* Updates a bulk job's progress page while the job runs (no build step). Texts come from
   the server (translated, numbers and costs formatted there). One request a poll returns
   the counts and the pages' listing rendered for this page's query string (status filter,
   ordering, page number), so the bar, cards, status tag, chips and rows change together;
   the listing's links (chips, column sorting, pagination) are ordinary links and keep
   working. The page reloads when the job finishes, and when a budget pauses it or it resumes
   (the pause notice and its Resume button come from the server). */
(function () {
  function register() {
    if (!window.wagtail || !window.wagtail.app || !window.StimulusModule) {
      return false;
    }
    class JobProgressController extends window.StimulusModule.Controller {
      static values = {
        url: String, running: Boolean, paused: Boolean, interval: { type: Number, default: 2000 },
      };
      static targets = [
        'bar', 'done', 'total', 'percent', 'succeeded', 'failed', 'skipped', 'queued',
        'running', 'cancelled', 'tokens', 'rate', 'eta', 'cost', 'status', 'statusTag',
        'noWorker', 'noWorkerMessage', 'listing', 'cached',
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
          const response = await fetch(`${this.urlValue}${window.location.search}`, {
            headers: { Accept: 'application/json', 'X-LLM-Job-Listing': '1' },
            credentials: 'same-origin',
          });
          if (!response.ok) throw new Error(response.statusText);
          data = await response.json();
        } catch (e) {
          this.schedule();
          return;
        }
        const d = data.display;
        if (this.hasBarTarget) {
          this.barTarget.setAttribute('aria-valuenow', d.processed_percent);
          this.barTarget.setAttribute('aria-valuetext', d.summary);
          d.segments.forEach((segment) => {
            const el = this.barTarget.querySelector(`[data-segment="${segment.status}"]`);
            if (el) {
              el.style.width = `${segment.width}%`;
              el.title = `${segment.label}: ${segment.text}`;
            }
          });
        }
        this.set('done', d.processed_text);
        this.set('total', d.total_text);
        this.set('percent', d.processed_percent);
        d.cards.forEach((card) => {
          this.set(card.status, card.text);
          const has = `has${card.status.charAt(0).toUpperCase()}${card.status.slice(1)}Target`;
          if (this[has]) this[`${card.status}Target`].dataset.count = card.count;
        });
        this.set('tokens', d.tokens);
        this.set('rate', d.rate);
        this.set('eta', d.eta);
        this.set('cost', d.cost);
        this.set('cached', d.cached);
        this.set('status', data.status);
        if (this.hasStatusTagTarget) {
          const tag = this.statusTagTarget.querySelector('.w-status');
          if (tag) {
            tag.textContent = d.status_label;
            tag.classList.toggle('w-status--primary', d.status_primary);
          }
        }
        if (this.hasListingTarget && typeof data.listing_html === 'string') {
          this.listingTarget.innerHTML = data.listing_html;
        }
        if (this.hasNoWorkerTarget) {
          this.noWorkerTarget.hidden = !d.no_worker;
          this.set('noWorkerMessage', d.no_worker_message);
        }
        if (data.finished || Boolean(data.paused) !== this.pausedValue) {
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
