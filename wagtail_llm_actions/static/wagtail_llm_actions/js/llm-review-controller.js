/* wagtail-llm-actions: reviewing a generated value in the page editor ("llm-review").
 *
 * The partner of the "llm-action" controller, on the same element: "llm-action" runs a job and
 * polls it (status, errors, Cancel); when the answer arrives it hands it to this controller's
 * fill(). This one fills the target field (text input, textarea, tag widget or Draftail rich
 * text), highlights it and offers Undo, Regenerate, Discard and Keep on one review line. Undo
 * and Discard put the previous value back exactly, so autosave has nothing new to save.
 * Nothing else in the form is touched. The ids of generated values in the form travel with
 * the form in a hidden input (removed when empty), so the server links them to the revision
 * that saves them. Several fields and candidates: see llm-fields.js. Where the review line
 * and messages go (the field's panel, or a box after the field) is the runner's host().
 */
(() => {
  'use strict';

  const IDENTIFIER = 'llm-review';
  const RUNNER = 'llm-action';
  const INTERACTIONS_FIELD = 'llm_action_interactions';

  const icon = (name, className = '') => {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', `icon icon-${name} ${className}`.trim());
    svg.setAttribute('aria-hidden', 'true');
    const use = document.createElementNS('http://www.w3.org/2000/svg', 'use');
    use.setAttribute('href', `#icon-${name}`);
    svg.appendChild(use);
    return svg;
  };

  const csrfToken = (form) => {
    const input = form && form.querySelector('input[name="csrfmiddlewaretoken"]');
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : '';
  };

  /* -- reading and writing the field, per widget ------------------------------------------ */

  const widgets = {
    text: {
      read: (input) => input.value,
      snapshot: (input) => ({ value: input.value }),
      write: (input, value) => {
        input.value = value;
        input.dispatchEvent(new Event('input', { bubbles: true }));
        input.dispatchEvent(new Event('change', { bubbles: true }));
      },
    },
    tags: {
      snapshot: (input) => ({ value: widgets.tags.read(input), raw: input.value }),
      read: (input) => {
        const $ = window.jQuery;
        if ($ && $(input).data('ui-tagit')) return $(input).tagit('assignedTags').slice();
        return input.value;
      },
      write: (input, value) => {
        const $ = window.jQuery;
        const tags = Array.isArray(value)
          ? value
          : String(value || '')
              .split(',')
              .map((tag) => tag.trim())
              .filter(Boolean);
        if ($ && $(input).data('ui-tagit')) {
          $(input).tagit('removeAll');
          tags.forEach((tag) => $(input).tagit('createTag', tag));
        } else {
          input.value = tags.map((t) => (t.includes(' ') ? `"${t}"` : t)).join(', ');
        }
        input.dispatchEvent(new Event('change', { bubbles: true }));
      },
    },
    draftail: {
      snapshot: (input) => ({
        value: input.value,
        state:
          input.draftailEditor && typeof input.draftailEditor.getEditorState === 'function'
            ? input.draftailEditor.getEditorState()
            : null,
      }),
      read: (input) => input.value,
      write: (input, value) => {
        const raw = typeof value === 'string' ? value : JSON.stringify(value);
        const editor = input.draftailEditor;
        if (editor && window.Draftail && window.Draftail.createEditorStateFromRaw) {
          const parsed = raw && raw !== 'null' ? JSON.parse(raw) : null;
          editor.onChange(window.Draftail.createEditorStateFromRaw(parsed));
        }
        input.value = raw;
        input.dispatchEvent(new Event('change', { bubbles: true }));
      },
    },
  };

  /**
   * Put a field back exactly as it was before a fill, so that the form is not "dirty" compared
   * with before and Wagtail's autosave has nothing new to save. Widgets that rewrite their
   * hidden input on their own (tags, Draftail) get the original string back afterwards.
   */
  const restore = (kind, input, snapshot) => {
    if (kind === 'draftail') {
      const editor = input.draftailEditor;
      if (editor && snapshot.state) editor.onChange(snapshot.state);
      const putBack = () => {
        if (editor && snapshot.state && editor.getEditorState() !== snapshot.state) return;
        input.value = snapshot.value;
        try {
          input.rawContentState = JSON.parse(snapshot.value);
        } catch (error) {
          // not JSON: leave the editor's own copy
        }
      };
      putBack();
      // Draftail saves its state to the input on a short debounce (250 ms); should it write
      // its own serialisation of the same content, the original string is put back after it.
      [300, 600, 1200].forEach((ms) => window.setTimeout(putBack, ms));
      return;
    }
    if (kind === 'tags') {
      widgets.tags.write(input, snapshot.value);
      input.value = snapshot.raw;
      return;
    }
    widgets.text.write(input, snapshot.value);
  };

  class LLMReviewController extends window.StimulusModule.Controller {
    connect() {
      this.review = null;
      this.original = undefined;
    }

    /** The "llm-action" controller on the same element: the field, messages, status line. */
    get runner() {
      return this.application.getControllerForElementAndIdentifier(this.element, RUNNER);
    }

    get form() {
      return this.runner.form;
    }

    get input() {
      return this.runner.input;
    }

    host() {
      return this.runner.host();
    }

    t(key, values = {}) {
      return this.runner.t(key, values);
    }

    announce(text, visible = true) {
      this.runner.announce(text, visible);
    }

    showError(text) {
      this.runner.showError(text);
    }

    widgetKind(input) {
      return this.runner.widgetKind(input);
    }

    fieldWrapper(input) {
      return this.runner.fieldWrapper(input);
    }

    interactionsInput(create = true) {
      const form = this.form;
      if (!form) return null;
      let input = form.querySelector(`input[name="${INTERACTIONS_FIELD}"]`);
      if (!input && create) {
        input = document.createElement('input');
        input.type = 'hidden';
        input.name = INTERACTIONS_FIELD;
        input.value = '';
        form.appendChild(input);
      }
      return input;
    }

    trackInteraction(id, present) {
      const input = this.interactionsInput(present);
      if (!input) return;
      const ids = new Set(input.value.split(',').filter(Boolean));
      if (present) ids.add(String(id));
      else ids.delete(String(id));
      if (ids.size) input.value = Array.from(ids).join(',');
      else input.remove(); // as before the first fill, so the form is not changed by it
    }

    fill(result, params) {
      // Several fields, or candidates to choose from: see llm-fields.js.
      const extra = window.wagtailLLMActions || {};
      if (result.fields && extra.fillFields) {
        extra.fillFields(this.runner, result, params);
        return;
      }
      if (result.candidates && result.candidates.length > 1 && extra.showCandidates) {
        extra.showCandidates(this.runner, result, params);
        return;
      }
      const input = this.input;
      if (!input) {
        this.showError(this.t('noField'));
        return;
      }
      const kind = result.widget || this.widgetKind(input);
      const widget = widgets[kind] || widgets.text;
      const previous = this.review;
      if (previous && previous.interaction !== result.interaction) {
        // Regenerated: the earlier suggestion is discarded; Undo goes back to the original.
        this.sendOutcome(previous, 'discarded');
        this.trackInteraction(previous.interaction, false);
      }
      if (!previous) this.original = (widget.snapshot || widgets.text.snapshot)(input);
      widget.write(input, result.value);
      this.review = {
        interaction: result.interaction,
        outcomeUrl: result.outcome_url,
        kind,
        generated: result.value,
        text: result.text,
        params,
        undone: false,
        // Why the answer may be incomplete (cut off by the token limit), shown until undone.
        warning: result.warning || '',
      };
      this.trackInteraction(result.interaction, true);
      this.highlight(true);
      this.renderReview(this.t('filledShort', { action: params.name }));
      const filled = this.t('filled', { action: params.name });
      this.announce(result.warning ? `${filled} ${result.warning}` : filled, false);
      this.element.dispatchEvent(
        new CustomEvent('llm-action:filled', { bubbles: true, detail: { ...result } }),
      );
    }

    highlight(on) {
      const wrapper = this.fieldWrapper(this.input);
      if (wrapper) wrapper.classList.toggle('llm-action--filled', on);
    }

    renderReview(text) {
      const host = this.host();
      if (!host) return;
      const review = host.reviewTarget;
      review.replaceChildren();
      const label = document.createElement('span');
      label.className = 'llm-action__review-text';
      label.append(icon('pick'), document.createTextNode(text));
      review.appendChild(label);
      const undone = this.review && this.review.undone;
      const buttons = [
        undone ? ['redo', 'redo', 'rotate'] : ['undo', 'undo', 'arrow-left'],
        ['regenerate', 'regenerate', 'rotate'],
        ['discard', 'discard', 'bin'],
      ];
      if (!undone) buttons.push(['keep', 'keep', 'check']);
      buttons.forEach(([key, method, iconName]) => {
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'button button-small button-secondary';
        button.dataset.llmActionReview = key;
        button.append(icon(iconName), document.createTextNode(this.t(key)));
        button.addEventListener('click', () => this[method]());
        review.appendChild(button);
      });
      if (this.review && this.review.warning && !undone) {
        const warning = document.createElement('span');
        warning.className =
          'llm-action__message llm-action__message--warning llm-action__review-warning';
        warning.dataset.llmActionWarning = '';
        warning.append(icon('warning'), document.createTextNode(this.review.warning));
        review.appendChild(warning);
      }
      review.hidden = false;
    }

    closeReview() {
      const host = this.host();
      if (host) {
        host.reviewTarget.hidden = true;
        host.reviewTarget.replaceChildren();
      }
      this.highlight(false);
      this.review = null;
      this.original = undefined;
    }

    writeField(value) {
      const input = this.input;
      if (!input || !this.review) return;
      const widget = widgets[this.review.kind] || widgets.text;
      widget.write(input, value);
    }

    restoreField() {
      const input = this.input;
      if (!input || !this.review || this.original === undefined) return;
      restore(this.review.kind, input, this.original);
    }

    undo() {
      if (!this.review || this.review.undone) return;
      this.restoreField();
      this.review.undone = true;
      this.trackInteraction(this.review.interaction, false);
      this.sendOutcome(this.review, 'discarded');
      this.highlight(false);
      this.renderReview(this.t('undone'));
      this.announce(this.t('undone'), false);
      this.focusReview('redo');
    }

    redo() {
      if (!this.review || !this.review.undone) return;
      this.writeField(this.review.generated);
      this.review.undone = false;
      this.trackInteraction(this.review.interaction, true);
      this.sendOutcome(this.review, 'pending');
      this.highlight(true);
      this.renderReview(this.t('filledShort', { action: this.review.params.name }));
      this.announce(this.t('redone'), false);
      this.focusReview('undo');
    }

    regenerate() {
      if (!this.review) return;
      // Regenerate asks the model again, never the response cache.
      this.runner.start({ ...this.review.params, regenerate: true });
    }

    discard() {
      if (!this.review) return;
      if (!this.review.undone) {
        this.restoreField();
        this.sendOutcome(this.review, 'discarded');
      }
      this.trackInteraction(this.review.interaction, false);
      this.closeReview();
      this.announce(this.t('discarded'));
      this.focusRunButton();
    }

    keep() {
      if (!this.review) return;
      // The value stays in the form (and its id in the hidden input) until it is saved.
      const host = this.host();
      if (host) {
        host.reviewTarget.hidden = true;
        host.reviewTarget.replaceChildren();
      }
      this.highlight(false);
      this.review = null;
      this.original = undefined;
      this.announce(this.t('kept'));
      this.focusRunButton();
    }

    focusReview(key) {
      const host = this.host();
      const button = host && host.reviewTarget.querySelector(`[data-llm-action-review="${key}"]`);
      if (button) button.focus();
    }

    focusRunButton() {
      const runner = this.runner;
      if (runner && runner.hasRunTarget) runner.runTarget.focus();
    }

    async sendOutcome(review, outcome) {
      if (!review || !review.outcomeUrl) return;
      const body = new FormData();
      body.append('outcome', outcome);
      try {
        await fetch(review.outcomeUrl, {
          method: 'POST',
          body,
          credentials: 'same-origin',
          headers: { 'X-CSRFToken': csrfToken(this.form), Accept: 'application/json' },
        });
      } catch (error) {
        // Recording the outcome is best effort; the form is what matters.
      }
    }
  }

  const register = () => {
    if (!window.wagtail || !window.wagtail.app || !window.StimulusModule) return false;
    window.wagtail.app.register(IDENTIFIER, LLMReviewController);
    return true;
  };
  if (!register()) document.addEventListener('DOMContentLoaded', register, { once: true });
})();
