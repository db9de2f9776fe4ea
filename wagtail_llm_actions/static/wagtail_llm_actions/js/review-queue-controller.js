/* The review queue: keyboard navigation and selection (no build step). The decisions are
   plain forms, so the page works without this script: j/k move between pages, a accepts the
   current page, r rejects it, x selects it for "Accept selected". */
(function () {
  function register() {
    if (!window.wagtail || !window.wagtail.app || !window.StimulusModule) {
      return false;
    }
    class ReviewQueueController extends window.StimulusModule.Controller {
      static targets = ['row', 'checkbox', 'all', 'count', 'accept', 'reject'];

      connect() {
        const id = window.location.hash.replace('#', '');
        const from = this.rowTargets.findIndex((row) => row.id === id);
        // after a decision: the next page still to review, else the first
        let index = this.rowTargets.findIndex(
          (row, i) => i >= Math.max(from, 0) && row.dataset.llmReviewState === 'to_review',
        );
        if (index < 0) index = Math.max(from, 0);
        if (this.rowTargets.length) this.focus(index, from >= 0);
        this.count();
      }

      get index() {
        return this.rowTargets.findIndex((row) => row.classList.contains('llm-review__row--current'));
      }

      focus(index, scroll = true) {
        const rows = this.rowTargets;
        if (!rows.length) return;
        const next = Math.min(Math.max(index, 0), rows.length - 1);
        rows.forEach((row, i) => row.classList.toggle('llm-review__row--current', i === next));
        rows[next].setAttribute('aria-current', 'true');
        rows.forEach((row, i) => { if (i !== next) row.removeAttribute('aria-current'); });
        if (scroll) {
          rows[next].focus({ preventScroll: true });
          rows[next].scrollIntoView({ block: 'nearest' });
        }
      }

      pick(event) {
        const index = this.rowTargets.indexOf(event.currentTarget);
        if (index >= 0) this.focus(index, false);
      }

      key(event) {
        if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
        const tag = (event.target.tagName || '').toLowerCase();
        if (['input', 'select', 'textarea'].includes(tag) && event.target.type !== 'checkbox') return;
        if (event.target.isContentEditable) return;
        const row = this.rowTargets[this.index];
        switch (event.key) {
          case 'j':
            this.focus(this.index + 1);
            break;
          case 'k':
            this.focus(this.index - 1);
            break;
          case 'a':
            this.press(row, 'accept');
            break;
          case 'r':
            this.press(row, 'reject');
            break;
          case 'x': {
            const box = row && row.querySelector('input[type=checkbox]');
            if (box) {
              box.checked = !box.checked;
              this.count();
            }
            break;
          }
          default:
            return;
        }
        event.preventDefault();
      }

      press(row, name) {
        if (!row) return;
        const button = this[`${name}Targets`].find((b) => row.contains(b));
        if (button) button.click();
      }

      selectAll(event) {
        this.checkboxTargets.forEach((box) => { box.checked = event.target.checked; });
        this.count();
      }

      count() {
        const n = this.checkboxTargets.filter((box) => box.checked).length;
        if (this.hasCountTarget) this.countTarget.textContent = n;
      }
    }
    window.wagtail.app.register('llm-review-queue', ReviewQueueController);
    return true;
  }
  if (!register()) {
    document.addEventListener('DOMContentLoaded', register, { once: true });
  }
})();
