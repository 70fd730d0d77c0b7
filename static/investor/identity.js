// Step 2: identity form (A6, A17.1) -> PUT /application/identity.

import { $, $$, el } from '../js/dom.js';
import { bi, onLangChange, t } from '../js/i18n.js';
import { NATIONALITIES, decodeIdNumber, nationalityOf } from './idnumber.js';
import { isService, serviceName, showService } from './service.js';
import {
  busy, clearAlert, clearFieldErrors, focusControl, showAlert, showFieldError,
} from './ui.js';

const SEX = { M: ['男', 'Male'], F: ['女', 'Female'] };

function option(value, zh, en) {
  return el('option', { value, dataset: { zh, en } }, t(zh, en));
}

export function setupIdentity(ctx) {
  const form = $('#identity-form');
  const saved = $('#identity-saved');
  const alertBox = $('#identity-alert');
  const f = (name) => form.elements.namedItem(name);
  const longTerm = $('#valid_until_long_term');
  let options = null;

  function nationalityText(code) {
    const names = NATIONALITIES[code];
    return names ? `${t(names[0], names[1])} (${code})` : '';
  }

  function updateDerived() {
    const resident = f('document_type').value === 'resident_id';
    longTerm.disabled = !resident;
    if (!resident) longTerm.checked = false;
    $('#long-term-label').classList.toggle('disabled', !resident);
    f('valid_until').disabled = longTerm.checked;
    if (longTerm.checked) f('valid_until').value = '';
    const code = nationalityOf(f('document_type').value, f('id_number').value);
    f('nationality').value = nationalityText(code);
    f('nationality').dataset.code = code;
  }

  function setSex(value) {
    for (const radio of $$('input[name=sex]', form)) radio.checked = radio.value === value;
  }

  function fill(data) {
    if (data.document_type) f('document_type').value = data.document_type;
    for (const name of ['name', 'birth_date', 'valid_from', 'address', 'email']) {
      if (data[name] !== undefined && data[name] !== null) f(name).value = data[name];
    }
    if (data.occupation) f('occupation').value = data.occupation;
    if (data.id_number !== undefined) f('id_number').value = data.id_number;
    if (data.sex) setSex(data.sex);
    if (data.valid_until !== undefined) {
      longTerm.checked = !data.valid_until;
      f('valid_until').value = data.valid_until || '';
    }
    updateDerived();
  }

  async function loadOptions() {
    if (options) return;
    options = await ctx.options();
    f('document_type').replaceChildren(
      ...options.document_types.map((d) => option(d.id, d.zh, d.en)),
    );
    f('occupation').replaceChildren(
      option('', '请选择', 'Please choose'),
      ...options.occupations.map((o) => option(o.id, o.zh, o.en)),
    );
    f('occupation').options[0].disabled = true;
    f('occupation').value = '';
    f('details.occupation').replaceChildren(
      option('', '不变更', 'No change'),
      ...options.occupations.map((o) => option(o.id, o.zh, o.en)),
    );
  }

  // ── A21: a holder's service also needs an account of theirs and its own details ──
  const holder = $('#holder-fields');
  const DETAIL_FIELDS = {
    change_info: ['phone', 'address', 'email', 'occupation'],
    transfer_relationship: ['to_agency'],
    beijing_mark: ['action'],
  };

  function renderHolder() {
    const app = ctx.app;
    const service = isService(app);
    holder.hidden = !service;
    f('account_number').required = service;
    if (!service) return;
    $('#holder-service-name').replaceChildren(app.service ? serviceName(app.service)
      : app.business_type);
    for (const block of $$('[data-service]', holder)) {
      block.hidden = block.dataset.service !== app.business_type;
    }
  }

  function collectDetails() {
    const keys = DETAIL_FIELDS[ctx.app.business_type] || [];
    const details = {};
    for (const key of keys) {
      let value;
      if (key === 'action') {
        const radio = $('input[name="details.action"]:checked', form);
        value = radio ? radio.value : '';
      } else {
        value = f(`details.${key}`).value.trim();
      }
      if (value) details[key] = value;
    }
    return details;
  }

  function collect() {
    const sex = $('input[name=sex]:checked', form);
    return {
      name: f('name').value.trim(),
      document_type: f('document_type').value,
      id_number: f('id_number').value.trim(),
      sex: sex ? sex.value : '',
      birth_date: f('birth_date').value,
      valid_from: f('valid_from').value,
      valid_until: longTerm.checked ? '' : f('valid_until').value,
      valid_until_long_term: longTerm.checked,
      nationality: f('nationality').dataset.code || '',
      address: f('address').value.trim(),
      occupation: f('occupation').value,
      email: f('email').value.trim(),
      ...(isService(ctx.app) ? {
        account_number: f('account_number').value.replace(/\s+/g, '').toUpperCase(),
        details: collectDetails(),
      } : {}),
    };
  }

  /** Where the server's error goes: A21's refusals belong to the account number. */
  function fieldOf(err) {
    const field = err.details && err.details.field;
    if (field) return field;
    if (['not_account_holder', 'account_already_cancelled', 'method_not_allowed'].includes(err.code)) {
      return 'account_number';
    }
    return null;
  }

  async function save() {
    clearFieldErrors(form);
    clearAlert(alertBox);
    if (isService(ctx.app) && ctx.app.business_type === 'change_info'
      && !Object.keys(collectDetails()).length) {
      focusControl(showFieldError(form, 'details', {
        zh: '请至少填写一项要变更的信息。', en: 'Fill in at least one detail to change.',
      }));
      return;
    }
    try {
      const body = await ctx.api.put('/application/identity', collect());
      f('id_number').value = '';
      f('account_number').value = '';
      await ctx.resume(body.application);
    } catch (err) {
      const field = fieldOf(err);
      const control = field ? showFieldError(form, field, err) : null;
      if (control) focusControl(control);
      else {
        showAlert(alertBox, err);
        alertBox.scrollIntoView({ block: 'center' });
      }
    }
  }

  function renderSaved(identity) {
    const names = options ? options.document_types : [];
    const doc = names.find((d) => d.id === identity.document_type);
    const occupation = options ? options.occupations.find((o) => o.id === identity.occupation) : null;
    const validity = identity.valid_until
      ? `${identity.valid_from} – ${identity.valid_until}`
      : null;
    const rows = [
      [['姓名', 'Name'], identity.name],
      [['证件类型', 'Document'], doc ? bi(doc.zh, doc.en) : identity.document_type],
      [['证件号码', 'Number'], identity.id_number_masked],
      [['性别', 'Sex'], SEX[identity.sex] ? bi(...SEX[identity.sex]) : identity.sex],
      [['出生日期', 'Date of birth'], identity.birth_date],
      [['有效期', 'Valid'], validity || bi(`${identity.valid_from} 起长期`, `${identity.valid_from}, long-term`)],
      [['职业', 'Occupation'], occupation ? bi(occupation.zh, occupation.en) : identity.occupation],
    ];
    $('#identity-saved-list').replaceChildren(...rows.flatMap(([[zh, en], value]) => [
      el('dt', {}, bi(zh, en)), el('dd', {}, value),
    ]));
    showService($('#identity-service'), ctx.app);
  }

  function showForm(identity) {
    saved.hidden = true;
    form.hidden = false;
    clearFieldErrors(form);
    const note = $('#identity-reenter');
    if (identity) {
      fill({ ...identity, id_number: '' });
      note.replaceChildren(bi(
        `已保存的证件号码为 ${identity.id_number_masked}。为保护您的信息，修改资料时请重新输入完整证件号码。`,
        `Saved document number: ${identity.id_number_masked}. To protect your data, re-enter the full number to change your details.`,
      ));
      note.hidden = false;
    } else {
      note.hidden = true;
    }
    $('#identity-cancel').hidden = !identity;
    renderHolder();
    if (identity && isService(ctx.app)) {
      note.append(' ', bi('请同时重新填写账户号码。', 'Enter the account number again too.'));
    }
  }

  // Typing a complete number fills birth date and sex (the number encodes both).
  f('id_number').addEventListener('input', () => {
    const decoded = decodeIdNumber(f('id_number').value);
    if (decoded) {
      f('birth_date').value = decoded.birthDate;
      setSex(decoded.sex);
    }
    updateDerived();
  });
  f('document_type').addEventListener('change', updateDerived);
  longTerm.addEventListener('change', updateDerived);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy($('#identity-submit'), save);
  });
  $('#identity-edit').addEventListener('click', () => {
    showForm(ctx.app.identity);
    $('#h-identity').focus();
  });
  $('#identity-cancel').addEventListener('click', () => {
    form.hidden = true;
    saved.hidden = false;
    $('#h-identity').focus();
  });
  $('#identity-continue').addEventListener('click', () => ctx.next());
  for (const button of $$('[data-fill-identity]')) {
    button.addEventListener('click', () => {
      const d = button.dataset;
      clearFieldErrors(form);
      fill({
        name: d.name,
        document_type: d.documentType,
        id_number: d.idNumber,
        sex: d.sex,
        birth_date: d.birthDate,
        valid_from: d.validFrom,
        valid_until: d.validUntil,
        address: f('address').value || '北京市东城区测试路1号（测试地址）',
      });
      ctx.notify(`已填入测试身份：${d.name}`, `Test identity filled in: ${d.name}`);
      f('occupation').focus();
    });
  }
  onLangChange(() => {
    updateDerived();
    if (!saved.hidden && ctx.app && ctx.app.identity) renderSaved(ctx.app.identity);
  });

  return {
    async enter({ edit = false, problem = null } = {}) {
      clearAlert(alertBox);
      await loadOptions();
      const identity = ctx.app && ctx.app.identity;
      if (identity && !edit) {
        renderSaved(identity);
        form.hidden = true;
        saved.hidden = false;
      } else {
        showForm(identity);
        if (!identity) updateDerived();
      }
      if (problem) showAlert(alertBox, problem);
    },
  };
}
