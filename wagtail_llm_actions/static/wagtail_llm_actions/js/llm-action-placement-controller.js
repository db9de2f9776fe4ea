/* wagtail-llm-actions: put "Generate …" buttons beside fields the page's panels leave plain.
 *
 * The editor's action menu item renders, for each such field, a <template> holding the same
 * buttons LLMActionPanel draws (an `llm-action` controller). This controller moves a copy of
 * each beside its field, after the form's own field wrapper ([data-field-wrapper]), so sites
 * get buttons without changing their panels. A field missing from the form is skipped.
 */
(() => {
  'use strict';

  const IDENTIFIER = 'llm-action-placement';

  class LLMActionPlacementController extends window.StimulusModule.Controller {
    static targets = ['buttons'];

    connect() {
      const form = this.element.closest('form') || document.querySelector('form[data-edit-form]');
      if (!form) return;
      this.buttonsTargets.forEach((template) => {
        const field = template.dataset.field;
        if (!field) return;
        if (form.querySelector(`[data-llm-action-placed="${CSS.escape(field)}"]`)) return;
        const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
        const wrapper =
          input && (input.closest('[data-field-wrapper]') || input.closest('.w-field__wrapper'));
        if (!wrapper) return;
        const content = template.content.cloneNode(true);
        const element = content.firstElementChild;
        if (!element) return;
        element.dataset.llmActionPlaced = field;
        wrapper.after(element);
      });
    }
  }

  const register = () => {
    if (!window.wagtail || !window.wagtail.app || !window.StimulusModule) return false;
    window.wagtail.app.register(IDENTIFIER, LLMActionPlacementController);
    return true;
  };
  if (!register()) document.addEventListener('DOMContentLoaded', register, { once: true });
})();
