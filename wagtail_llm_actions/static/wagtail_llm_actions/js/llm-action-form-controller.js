/* wagtail-llm-actions: the action form's guidance.
 *
 * Keeps the source-path suggestions and the target-field choices to those of the chosen page
 * types (valid for all of them; every type's when none is chosen), and the "where it
 * appears" note in step with the page types, the target field and the slug. The data, per
 * page type, is rendered by ActionPlacementPanel (forms.py); nothing is fetched.
 */
(() => {
  'use strict';

  const IDENTIFIER = 'llm-action-form';

  class LLMActionFormController extends window.StimulusModule.Controller {
    static targets = ['field', 'types', 'slug', 'restricted'];

    static values = {
      data: { type: Object, default: {} },
      noTypes: { type: String, default: '' },
      restrictedText: { type: String, default: '' },
      staleText: { type: String, default: '{name}' },
    };

    connect() {
      this.form = this.element.closest('form');
      if (!this.form) return;
      this.update = this.update.bind(this);
      this.form.addEventListener('change', this.update);
      this.form.addEventListener('input', this.update);
      this.update();
    }

    disconnect() {
      if (!this.form) return;
      this.form.removeEventListener('change', this.update);
      this.form.removeEventListener('input', this.update);
    }

    field(name) {
      return this.form.querySelector(`[name="${name}"]`);
    }

    chosen() {
      return Array.from(this.form.querySelectorAll('input[name="page_types"]:checked')).map(
        (input) => input.value,
      );
    }

    combined(chosen) {
      const data = this.dataValue;
      const keys = chosen.filter((key) => key in data);
      const all = keys.length ? keys : Object.keys(data);
      let sources = null;
      let targets = null;
      all.forEach((key) => {
        const entry = data[key];
        if (sources === null) {
          sources = entry.sources.slice();
          targets = entry.targets.slice();
        } else if (keys.length) {
          const names = new Set(entry.targets.map((t) => t[0]));
          sources = sources.filter((path) => entry.sources.includes(path));
          targets = targets.filter((t) => names.has(t[0]));
        } else {
          entry.sources.forEach((path) => sources.includes(path) || sources.push(path));
          const names = new Set(targets.map((t) => t[0]));
          entry.targets.forEach((t) => names.has(t[0]) || targets.push(t));
        }
      });
      return { sources: sources || [], targets: targets || [] };
    }

    update() {
      const chosen = this.chosen();
      const key = chosen.join(',');
      if (key !== this.lastChosen) {
        this.lastChosen = key;
        const { sources, targets } = this.combined(chosen);
        this.updateSources(sources);
        this.updateTargets(targets);
      }
      this.updateNote(chosen);
    }

    updateSources(sources) {
      const input = this.field('source_field');
      const list = input && input.list;
      if (!list) return;
      list.replaceChildren(
        ...sources.map((path) => {
          const option = document.createElement('option');
          option.value = path;
          return option;
        }),
      );
    }

    updateTargets(targets) {
      const select = this.field('target_field');
      if (!select || select.tagName !== 'SELECT') return;
      const current = select.value;
      const placeholder = select.options[0] && select.options[0].value === '' ? select.options[0] : null;
      const options = targets.map(([name, label]) => new Option(`${name} — ${label}`, name));
      if (current && !targets.some(([name]) => name === current)) {
        // Kept so that nothing changes behind the user's back; saving says why it is wrong.
        options.push(new Option(this.staleTextValue.replace('{name}', current), current));
      }
      select.replaceChildren(...(placeholder ? [placeholder] : []), ...options);
      select.value = current;
    }

    updateNote(chosen) {
      const data = this.dataValue;
      const target = (this.field('target_field') || {}).value || '';
      const slug = (this.field('slug') || {}).value || '';
      const labels = chosen.filter((key) => key in data).map((key) => data[key].label);
      if (this.hasFieldTarget) this.fieldTarget.textContent = target || '…';
      if (this.hasTypesTarget) this.typesTarget.textContent = labels.join(', ') || this.noTypesValue;
      if (this.hasSlugTarget) this.slugTarget.textContent = slug || '<slug>';
      if (this.hasRestrictedTarget) {
        const restricted = chosen
          .filter((key) => key in data)
          .filter((key) => {
            const allowed = (data[key].restricted || {})[target];
            return allowed && !allowed.includes(slug);
          })
          .map((key) => data[key].label);
        this.restrictedTarget.hidden = !restricted.length;
        this.restrictedTarget.textContent = restricted.length
          ? this.restrictedTextValue.replace('{types}', restricted.join(', '))
          : '';
      }
    }
  }

  const register = () => {
    if (!window.wagtail || !window.wagtail.app || !window.StimulusModule) return false;
    window.wagtail.app.register(IDENTIFIER, LLMActionFormController);
    return true;
  };
  if (!register()) document.addEventListener('DOMContentLoaded', register, { once: true });
})();
