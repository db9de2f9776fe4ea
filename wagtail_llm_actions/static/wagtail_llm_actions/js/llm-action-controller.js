/* wagtail-llm-actions: the page editor's "Generate …" buttons ("llm-action": run and poll).
 *
 * A plain Stimulus controller registered with Wagtail's Stimulus application (no build step).
 * A click posts the whole edit form as it is on screen (unsaved edits included) to the run
 * endpoint, which queues a job and answers at once. The controller polls the job's status,
 * says "Waiting to start…" until a worker claims the job, then "Generating with …" with
 * the elapsed time and Cancel, and shows a failure beside the field. The answer goes to the
 * "llm-review" controller on the same element (llm-review-controller.js), which fills the
 * field and drives the review line. Chosen from the action menu, the menu closes and the
 * field's buttons run. A streaming run's text so far (``partial`` in the status) shows in
 * the locked field while it is written; the field is put back as it was before the answer
 * is filled, or on Cancel or failure.
 */
(() => {
  'use strict';

  const IDENTIFIER = 'llm-action';
  const REVIEWER = 'llm-review';
  const POLL_FAST_MS = 300;
  const POLL_SLOW_MS = 1000;
  const MAX_NETWORK_FAILURES = 5;

  const icon = (name, className = '') => {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', `icon icon-${name} ${className}`.trim());
    svg.setAttribute('aria-hidden', 'true');
    const use = document.createElementNS('http://www.w3.org/2000/svg', 'use');
    use.setAttribute('href', `#icon-${name}`);
    svg.appendChild(use);
    return svg;
  };

  const format = (template, values) =>
    String(template || '').replace(/\{(\w+)\}/g, (match, key) =>
      key in values ? String(values[key]) : match,
    );

  const csrfToken = (form) => {
    const input = form && form.querySelector('input[name="csrfmiddlewaretoken"]');
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : '';
  };

  /**
   * Form data as it is on screen. Rich text editors write their hidden input on a short
   * debounce, so text typed just before the click is read from the editors themselves
   * (without their comment highlights).
   */
  const currentFormData = (form) => {
    const data = new FormData(form);
    for (const [key, value] of Array.from(data.entries())) {
      if (value instanceof File) data.delete(key);
    }
    const serialise = window.Draftail && window.Draftail.serialiseEditorStateToRaw;
    if (!serialise) return data;
    form.querySelectorAll('input[type="hidden"]').forEach((input) => {
      const editor = input.draftailEditor;
      if (!input.name || !editor || typeof editor.getEditorState !== 'function') return;
      try {
        const raw = serialise(editor.getEditorState());
        if (raw && Array.isArray(raw.blocks)) {
          raw.blocks.forEach((block) => {
            block.inlineStyleRanges = (block.inlineStyleRanges || []).filter(
              (range) => !String(range.style).startsWith('COMMENT-'),
            );
          });
        }
        data.set(input.name, JSON.stringify(raw));
      } catch (error) {
        // keep what the input holds
      }
    });
    return data;
  };

  class LLMActionController extends window.StimulusModule.Controller {
    static targets = ['panel', 'run', 'status', 'error', 'review'];

    static values = {
      field: String,
      label: String,
      pickupTimeout: { type: Number, default: 8 },
      messages: { type: Object, default: {} },
    };

    connect() {
      this.job = null;
      // On the create view, Wagtail's autosave creates the page: later runs are on that page.
      this.onAutosaved = (event) => {
        const pk = event.detail && event.detail.response && event.detail.response.pk;
        if (pk && this.form) this.form.dataset.llmActionPageId = String(pk);
      };
      this.savedForm = this.form;
      if (this.savedForm) this.savedForm.addEventListener('w-autosave:success', this.onAutosaved);
    }

    disconnect() {
      this.stopPolling();
      if (this.savedForm) {
        this.savedForm.removeEventListener('w-autosave:success', this.onAutosaved);
      }
    }

    /** The run URL, switched from "new page" (or "new snippet") to the page (or snippet)
     * once autosave has created it. */
    runUrl(url) {
      const pk = this.form && this.form.dataset.llmActionPageId;
      if (!pk) return url;
      return url
        .replace(/\/run-new\/\d+\/\d+\/(\d+)\/$/, `/run/${pk}/$1/`)
        .replace(
          /\/snippet-run-new\/([^/]+)\/([^/]+)\/(\d+)\/(\?.*)?$/,
          `/snippet-run/$1/$2/${encodeURIComponent(pk)}/$3/`,
        );
    }

    t(key, values = {}) {
      return format(this.messagesValue[key] || key, {
        field: this.labelValue || this.fieldValue,
        ...values,
      });
    }

    /* -- the form and the field ----------------------------------------------------------- */

    get form() {
      return this.element.closest('form') || document.querySelector('form[data-edit-form]');
    }

    get input() {
      const form = this.form;
      if (!form) return null;
      return form.querySelector(`[name="${CSS.escape(this.fieldValue)}"]`);
    }

    widgetKind(input) {
      if (!input) return 'text';
      if (input.draftailEditor || input.hasAttribute('data-draftail-input')) return 'draftail';
      if ((input.getAttribute('data-controller') || '').split(' ').includes('w-tag')) return 'tags';
      return 'text';
    }

    fieldWrapper(input) {
      return (
        (input && (input.closest('[data-field]') || input.closest('.w-field__wrapper'))) || null
      );
    }

    /** Where the status and review UI go: the panel, or a box after the field (menu). */
    host() {
      if (this.hasPanelTarget) return this;
      const panelHost = this.panelController();
      if (panelHost) return panelHost;
      if (!this.detached) {
        const input = this.input;
        const wrapper = input && input.closest('.w-field__wrapper');
        if (!wrapper) return null;
        const box = document.createElement('div');
        box.className = 'llm-action__panel llm-action__panel--detached';
        box.innerHTML =
          '<div class="llm-action__status" role="status" aria-live="polite" aria-atomic="true"></div>' +
          '<div class="llm-action__error" role="alert" hidden></div>' +
          '<div class="llm-action__review" role="group" hidden></div>';
        wrapper.after(box);
        this.detached = {
          statusTarget: box.querySelector('.llm-action__status'),
          errorTarget: box.querySelector('.llm-action__error'),
          reviewTarget: box.querySelector('.llm-action__review'),
          box,
        };
      }
      return this.detached;
    }

    /** The panel controller for the same field, if the page uses LLMActionPanel for it. */
    panelController() {
      const form = this.form;
      if (!form) return null;
      const elements = form.querySelectorAll(`[data-controller~="${IDENTIFIER}"]`);
      for (const element of elements) {
        if (element === this.element) continue;
        const controller = this.application.getControllerForElementAndIdentifier(
          element,
          IDENTIFIER,
        );
        if (controller && controller.hasPanelTarget && controller.fieldValue === this.fieldValue) {
          return controller;
        }
      }
      return null;
    }

    /** Close the action menu (a Wagtail ``w-dropdown``) this button sits in. */
    closeMenu() {
      const dropdown = this.element.closest('[data-controller~="w-dropdown"]');
      const controller =
        dropdown && this.application.getControllerForElementAndIdentifier(dropdown, 'w-dropdown');
      if (controller && typeof controller.hide === 'function') controller.hide();
    }

    revealField(input) {
      // A field on another tab (e.g. Promote) is shown before it is filled from the menu.
      const tabPanel = input && input.closest('[role="tabpanel"]');
      if (tabPanel && tabPanel.hidden) {
        const tab = document.querySelector(`[aria-controls="${tabPanel.id}"], a[href="#${tabPanel.id}"]`);
        if (tab) tab.click();
      }
      const wrapper = this.fieldWrapper(input);
      if (wrapper && wrapper.scrollIntoView) wrapper.scrollIntoView({ block: 'center' });
    }

    /* -- running -------------------------------------------------------------------------- */

    async run(event) {
      const params = (event && event.params) || {};
      if (!this.hasPanelTarget) {
        // From the action menu: close it (it would cover the review buttons), then use the
        // field's panel when there is one.
        this.closeMenu();
        const panel = this.panelController();
        if (panel) {
          panel.revealField(panel.input);
          panel.start(params);
          return;
        }
        this.revealField(this.input);
      }
      this.start(params);
    }

    async start(params) {
      if (this.job) return; // one run at a time per field
      const host = this.host();
      const input = this.input;
      if (!host || !input) {
        this.showError(this.t('noField'), host);
        return;
      }
      this.lastParams = params;
      this.clearError();
      const form = this.form;
      const body = currentFormData(form);
      if (params.regenerate) body.append('llm_regenerate', '1');
      this.job = { startedAt: performance.now(), params, stalledAcknowledgedAt: 0 };
      this.setBusy(true);
      this.lockField(input, params.pipeline ? null : input);
      // Nothing is generating until a worker claims the job (status "running").
      this.job.state = 'queued';
      this.showProgress(this.t('queued'));
      let response;
      let data = null;
      try {
        response = await fetch(this.runUrl(params.url), {
          method: 'POST',
          body,
          credentials: 'same-origin',
          headers: { 'X-CSRFToken': csrfToken(form), Accept: 'application/json' },
        });
      } catch (error) {
        this.finish();
        this.showError(this.t('network'));
        return;
      }
      try {
        data = await response.json();
      } catch (error) {
        data = null; // an HTML error page (a proxy's, Django's 400): the status says enough
      }
      if (!response.ok || !data) {
        this.finish();
        let message = data && data.message;
        if (!message) {
          message =
            response.status === 413
              ? this.t('tooLarge')
              : this.t('httpError', { status: response.status });
        }
        this.showError(this.t('failed', { message }));
        return;
      }
      this.job.statusUrl = data.status_url;
      this.job.cancelUrl = data.cancel_url;
      this.job.failures = 0;
      this.poll();
    }

    poll() {
      if (!this.job || !this.job.statusUrl) return;
      const elapsed = performance.now() - this.job.startedAt;
      const delay = elapsed < 5000 ? POLL_FAST_MS : POLL_SLOW_MS;
      this.pollTimer = window.setTimeout(() => this.checkStatus(), this.job.checked ? delay : 0);
    }

    stopPolling() {
      window.clearTimeout(this.pollTimer);
      window.clearInterval(this.clockTimer);
    }

    async checkStatus() {
      const job = this.job;
      if (!job) return;
      job.checked = true;
      let data;
      try {
        const response = await fetch(job.statusUrl, {
          credentials: 'same-origin',
          headers: { Accept: 'application/json' },
        });
        data = await response.json();
        if (!response.ok && !data.state) throw new Error(data.message || response.statusText);
      } catch (error) {
        job.failures += 1;
        if (job.failures >= MAX_NETWORK_FAILURES) {
          this.finish();
          this.showError(this.t('network'));
        } else {
          this.poll();
        }
        return;
      }
      if (this.job !== job) return; // cancelled meanwhile
      job.failures = 0;
      switch (data.state) {
        case 'succeeded':
          this.finish();
          this.fill(data.result, job.params);
          break;
        case 'failed':
          this.finish();
          this.showError(
            this.t(job.params.pipeline ? 'pipelineFailed' : 'failed', { message: data.message }),
          );
          break;
        case 'cancelled':
          this.finish();
          this.announce(this.t('cancelled'));
          break;
        case 'stalled':
          if (performance.now() - job.stalledAcknowledgedAt > this.pickupTimeoutValue * 1000) {
            // Said in an editor's words (the server's message names the task worker).
            this.showStalled(this.messagesValue.stalled ? this.t('stalled') : data.message);
            return; // wait for "Keep waiting" or "Cancel"
          }
          this.poll();
          break;
        case 'running':
          if (job.state !== 'running') {
            job.state = 'running';
            this.showProgress(this.t('running', { action: job.params.name }));
          }
          if (typeof data.partial === 'string') this.showPartial(data.partial);
          this.poll();
          break;
        default:
          this.poll();
      }
    }

    keepWaiting() {
      if (!this.job) return;
      this.job.stalledAcknowledgedAt = performance.now();
      this.showProgress(this.t('stalledWaiting'));
      this.poll();
    }

    async cancel() {
      const job = this.job;
      if (!job) return;
      this.finish();
      this.announce(this.t('cancelled'));
      if (job.cancelUrl) {
        try {
          await fetch(job.cancelUrl, {
            method: 'POST',
            credentials: 'same-origin',
            headers: { 'X-CSRFToken': csrfToken(this.form), Accept: 'application/json' },
          });
        } catch (error) {
          // The job's answer is dropped by the browser anyway.
        }
      }
    }

    finish() {
      this.stopPolling();
      this.clearPartial();
      this.job = null;
      this.setBusy(false);
      this.unlockField();
    }

    /**
     * While its run waits, the field the answer goes into is read-only and says
     * "Generating…": text typed meanwhile would be overwritten when the answer arrives.
     * (``inert`` covers every widget: text, tags, rich text.) A pipeline, which may fill
     * several fields, locks none: its answers are reviewed field by field.
     */
    lockField(input, target) {
      this.unlockField();
      if (!target) return;
      const box =
        target.closest('[data-field-input]') ||
        target.closest('.w-field__input') ||
        this.fieldWrapper(target);
      if (!box) return;
      const wasReadOnly = 'readOnly' in target ? target.readOnly : false;
      box.inert = true;
      box.setAttribute('aria-busy', 'true');
      box.classList.add('llm-action__field--generating');
      box.dataset.llmGenerating = this.t('generatingField');
      if ('readOnly' in target) target.readOnly = true;
      this.locked = { box, target, wasReadOnly };
    }

    unlockField() {
      const locked = this.locked;
      if (!locked) return;
      this.locked = null;
      locked.box.inert = false;
      locked.box.removeAttribute('aria-busy');
      locked.box.classList.remove('llm-action__field--generating');
      delete locked.box.dataset.llmGenerating;
      if ('readOnly' in locked.target) locked.target.readOnly = locked.wasReadOnly;
    }

    /**
     * A streaming answer so far (polled with the status): shown in the locked field itself
     * for a text field, else in a preview line under the status (rich text, tags). It is
     * never the field's value: the field is put back as it was when the run ends, and the
     * finished answer is filled and reviewed as any other (or nothing, on Cancel or failure).
     */
    showPartial(text) {
      const locked = this.locked;
      if (!locked || !this.job) return;
      const target = locked.target;
      if (!this.job.partial) {
        this.job.partial = { target, previous: 'value' in target ? target.value : null };
        locked.box.classList.add('llm-action__field--streaming');
        locked.box.dataset.llmGenerating = this.t('writingField');
      }
      if (this.widgetKind(target) === 'text' && this.job.partial.previous !== null) {
        target.value = text;
        if (target.scrollHeight) target.scrollTop = target.scrollHeight;
        return;
      }
      const host = this.host();
      if (!host) return;
      let preview = this.job.partial.preview;
      if (!preview) {
        preview = document.createElement('div');
        preview.className = 'llm-action__partial';
        preview.setAttribute('aria-hidden', 'true'); // the finished answer is announced
        host.statusTarget.after(preview);
        this.job.partial.preview = preview;
      }
      preview.textContent = text;
    }

    clearPartial() {
      const partial = this.job && this.job.partial;
      if (!partial) return;
      this.job.partial = null;
      if (partial.previous !== null && this.widgetKind(partial.target) === 'text') {
        partial.target.value = partial.previous; // the field as it was
      }
      if (partial.preview) partial.preview.remove();
      if (this.locked) this.locked.box.classList.remove('llm-action__field--streaming');
    }

    setBusy(busy) {
      const buttons = this.hasPanelTarget ? this.runTargets : [this.element];
      buttons.forEach((button) => {
        button.disabled = busy;
        button.setAttribute('aria-busy', busy ? 'true' : 'false');
      });
      const host = this.host();
      if (host && host.reviewTarget) {
        host.reviewTarget
          .querySelectorAll('button')
          .forEach((button) => (button.disabled = busy));
      }
    }

    /* -- handing the answer over ---------------------------------------------------------- */

    /** The "llm-review" controller on this element, which fills and reviews the field. */
    get reviewer() {
      return this.application.getControllerForElementAndIdentifier(this.element, REVIEWER);
    }

    fill(result, params) {
      const reviewer = this.reviewer;
      if (!reviewer) {
        this.showError(this.t('noField'));
        return;
      }
      reviewer.fill(result, params);
    }

    sendOutcome(review, outcome) {
      const reviewer = this.reviewer;
      return reviewer ? reviewer.sendOutcome(review, outcome) : Promise.resolve();
    }

    /* -- messages ------------------------------------------------------------------------- */

    /**
     * Say ``text`` in the status line. With ``visible`` false it is read by screen readers
     * only: the review line below already shows it, in one line.
     */
    announce(text, visible = true) {
      const host = this.host();
      if (!host) return;
      window.clearInterval(this.clockTimer);
      let node = document.createTextNode(text);
      if (!visible) {
        node = document.createElement('span');
        node.className = 'w-sr-only';
        node.textContent = text;
      }
      host.statusTarget.replaceChildren(node);
      host.statusTarget.classList.remove('llm-action__status--busy');
      host.statusTarget.classList.toggle('llm-action__status--quiet', !visible);
    }

    showProgress(text) {
      const host = this.host();
      if (!host) return;
      const status = host.statusTarget;
      status.replaceChildren();
      status.classList.remove('llm-action__status--quiet');
      status.classList.add('llm-action__status--busy');
      const message = document.createElement('span');
      message.className = 'llm-action__message';
      message.append(icon('spinner', 'llm-action__spinner'), document.createTextNode(text));
      const clock = document.createElement('span');
      clock.className = 'llm-action__elapsed';
      clock.setAttribute('aria-hidden', 'true'); // announced once, not every second
      const cancel = document.createElement('button');
      cancel.type = 'button';
      cancel.className = 'button button-small button-secondary llm-action__cancel';
      cancel.append(icon('cross'), document.createTextNode(this.t('cancel')));
      cancel.addEventListener('click', () => this.cancel());
      status.append(message, clock, cancel);
      const tick = () => {
        if (!this.job) return;
        const seconds = Math.floor((performance.now() - this.job.startedAt) / 1000);
        clock.textContent = this.t('elapsed', { seconds });
      };
      tick();
      window.clearInterval(this.clockTimer);
      this.clockTimer = window.setInterval(tick, 1000);
    }

    showStalled(message) {
      const host = this.host();
      if (!host) return;
      window.clearInterval(this.clockTimer);
      const status = host.statusTarget;
      status.replaceChildren();
      status.classList.remove('llm-action__status--busy', 'llm-action__status--quiet');
      const text = document.createElement('span');
      text.className = 'llm-action__message llm-action__message--warning';
      text.append(icon('warning'), document.createTextNode(message));
      const wait = document.createElement('button');
      wait.type = 'button';
      wait.className = 'button button-small button-secondary';
      wait.dataset.llmActionStalled = 'wait';
      wait.textContent = this.t('keepWaiting');
      wait.addEventListener('click', () => this.keepWaiting());
      const cancel = document.createElement('button');
      cancel.type = 'button';
      cancel.className = 'button button-small button-secondary';
      cancel.dataset.llmActionStalled = 'cancel';
      cancel.textContent = this.t('cancel');
      cancel.addEventListener('click', () => this.cancel());
      status.append(text, wait, cancel);
    }

    showError(text, host = this.host()) {
      if (!host) {
        window.alert(text); // no place near the field to show it
        return;
      }
      host.statusTarget.replaceChildren();
      host.statusTarget.classList.remove('llm-action__status--busy', 'llm-action__status--quiet');
      const error = host.errorTarget;
      error.replaceChildren(icon('warning'), document.createTextNode(text));
      error.hidden = false;
    }

    clearError() {
      const host = this.host();
      if (host) {
        host.errorTarget.hidden = true;
        host.errorTarget.replaceChildren();
      }
    }
  }

  const register = () => {
    if (!window.wagtail || !window.wagtail.app || !window.StimulusModule) return false;
    window.wagtail.app.register(IDENTIFIER, LLMActionController);
    return true;
  };
  if (!register()) document.addEventListener('DOMContentLoaded', register, { once: true });
})();
