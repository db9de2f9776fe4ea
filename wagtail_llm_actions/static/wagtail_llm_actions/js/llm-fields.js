/* wagtail-llm-actions: several fields from one answer, and several candidates to pick from.
 *
 * Kept apart from the "llm-review" controller, which calls these two functions from its fill()
 * (with the field's "llm-action" controller) when a result has `fields` (a structured action or
 * a pipeline) or `candidates` (N > 1):
 *
 *   fillFields(controller, result, params)
 *     Hands each field's value to the "llm-action" controller of that field (its panel, or a
 *     small one added after the field), so every field gets its own highlight and
 *     Keep / Undo / Discard. Each field is tracked as "<interaction>:<field>" in the hidden
 *     input and records its own outcome (outcome URL with ?field=). A pipeline's result gives
 *     each field its own interaction (the step that wrote it) and outcome URL.
 *
 *   showCandidates(controller, result, params)
 *     Shows the candidates as choices beside the field; picking one records the choice and
 *     fills the field with the usual review controls.
 */
(() => {
  'use strict';

  const IDENTIFIER = 'llm-action';

  const csrfToken = (form) => {
    const input = form && form.querySelector('input[name="csrfmiddlewaretoken"]');
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : '';
  };

  const withField = (url, field) =>
    `${url}${url.includes('?') ? '&' : '?'}field=${encodeURIComponent(field)}`;

  const nextFrame = () => new Promise((resolve) => window.setTimeout(resolve, 0));

  /** The llm-action controller of `field`: its panel's, else one added after the field. */
  async function controllerFor(origin, field) {
    const form = origin.form;
    if (!form) return null;
    const app = origin.application;
    const find = (predicate) => {
      for (const element of form.querySelectorAll(`[data-controller~="${IDENTIFIER}"]`)) {
        const controller = app.getControllerForElementAndIdentifier(element, IDENTIFIER);
        if (controller && controller.fieldValue === field && predicate(controller)) {
          return controller;
        }
      }
      return null;
    };
    const existing = find((c) => c.hasPanelTarget) || find((c) => c.element.dataset.llmFieldsHost);
    if (existing) return existing;
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
    const wrapper = input && (input.closest('[data-field]') || input.closest('.w-field__wrapper'));
    if (!wrapper) return null;
    const host = document.createElement('div');
    host.hidden = true;
    host.dataset.llmFieldsHost = field;
    host.dataset.controller = `${IDENTIFIER} llm-review`; // run + review, as a panel has
    host.setAttribute('data-llm-action-field-value', field);
    host.setAttribute('data-llm-action-messages-value', JSON.stringify(origin.messagesValue));
    wrapper.after(host);
    for (let i = 0; i < 20; i += 1) {
      await nextFrame(); // Stimulus connects new elements asynchronously
      const controller = app.getControllerForElementAndIdentifier(host, IDENTIFIER);
      if (controller) return controller;
    }
    return null;
  }

  async function fillFields(origin, result, params) {
    let filled = 0;
    for (const item of result.fields || []) {
      const controller = await controllerFor(origin, item.field);
      if (!controller) continue;
      controller.fill(
        item.interaction
          ? item // a pipeline: each field is its own step's interaction, with its own URL
          : {
              ...item,
              interaction: `${result.interaction}:${item.field}`,
              outcome_url: result.outcome_url ? withField(result.outcome_url, item.field) : '',
            },
        params,
      );
      filled += 1;
    }
    if (!filled) origin.showError(origin.t('noField'));
  }

  function showCandidates(controller, result, params) {
    const host = controller.host();
    if (!host) return;
    const review = host.reviewTarget;
    review.replaceChildren();
    const list = document.createElement('div');
    list.className = 'llm-action__candidates';
    list.setAttribute('role', 'group');
    list.setAttribute('aria-label', controller.t('candidates'));
    result.candidates.forEach((candidate) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'button button-small button-secondary llm-action__candidate';
      button.dataset.llmActionCandidate = String(candidate.index);
      // The suggestion's own text is the button's accessible name (WCAG 2.5.3, label in
      // name): an aria-label such as "Use suggestion 1" would hide it from screen readers.
      button.textContent = candidate.text;
      button.addEventListener('click', () => pick(controller, result, params, candidate));
      list.appendChild(button);
    });
    const discard = document.createElement('button');
    discard.type = 'button';
    discard.className = 'button button-small button-secondary';
    discard.dataset.llmActionReview = 'discard';
    discard.textContent = controller.t('discard');
    discard.addEventListener('click', () => {
      review.hidden = true;
      review.replaceChildren();
      controller.sendOutcome({ outcomeUrl: result.outcome_url }, 'discarded');
      controller.announce(controller.t('discarded'));
    });
    review.append(list, discard);
    review.hidden = false;
    controller.announce(
      controller.t('candidatesOffered', { action: params.name, count: result.candidates.length }),
    );
  }

  async function pick(controller, result, params, candidate) {
    if (result.choose_url) {
      const body = new FormData();
      body.append('index', String(candidate.index));
      try {
        await fetch(result.choose_url, {
          method: 'POST',
          body,
          credentials: 'same-origin',
          headers: { 'X-CSRFToken': csrfToken(controller.form), Accept: 'application/json' },
        });
      } catch (error) {
        // The form is what matters; the choice is recorded again when the page is saved.
      }
    }
    const { candidates, ...rest } = result;
    controller.fill(
      { ...rest, value: candidate.value, text: candidate.text, output: candidate.output },
      params,
    );
  }

  window.wagtailLLMActions = { ...(window.wagtailLLMActions || {}), fillFields, showCandidates };
})();
