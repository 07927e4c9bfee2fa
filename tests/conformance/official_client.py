#!/usr/bin/env python3
"""Conformance: drive a HubSpot API (meant for hubrelay's sandbox) through HubSpot's official Python client.

    <python> tests/conformance/official_client.py --base-url http://127.0.0.1:PORT --token T

Every HubSpot call hubrelay makes is sent through `hubspot-api-client` (pinned in
scripts/requirements-test.txt), and each answer must deserialize into the client's own models: a typed
object, not a raw dict, with every field the model requires (the generated models refuse a missing
required field or an unknown enum value). Error answers must raise `ApiException` with the expected status
and a JSON body that the client's `Error` model accepts (`message`, `correlationId`, `category`), except
the 429 of a rate limit, whose published shape (`errorType: RATE_LIMIT`, `policyName`) has no category.

Paths. hubspot-api-client 12.0.0 knows no date-based versions: it calls the legacy paths only, which the
sandbox serves beside the dated ones:
  POST  /crm/v3/objects/contacts/batch/upsert        batch upsert by email (200; 207 with errors)
  POST  /crm/v3/objects/contacts/batch/read          (not called by hubrelay; 207 with errors)
  POST  /crm/v3/objects/contacts/search              by property, by query, paged; lagging writes
  GET   /crm/v3/objects/contacts/{id}                by email (idProperty=email) and by id; archived=true
  DELETE /crm/v3/objects/contacts/{id}               archive (HubSpot keeps it 90 days)
  GET   /crm/v3/objects/contacts?limit=1             hubrelay's contacts-read probe
  PATCH /crm/v3/objects/contacts/{id}
  GET   /crm/v3/properties/contacts, POST /crm/v3/properties/contacts
  POST  /crm/v3/objects/{notes,calls,emails,meetings,tasks,communications}, GET …/{id}
  GET   /crm/v4/objects/{from}/{id}/associations/{to}  (limit/after paging)
  POST  /crm/v4/associations/{from}/{to}/batch/read
  POST  /crm/v3/objects/deals, GET/PATCH /crm/v3/objects/deals/{id}
  GET   /account-info/v3/details                     the client has no account-info API: sent with the
                                                     client's generic `api_request` and checked against
                                                     PortalInformationResponse of HubSpot's published spec
Faults (429, 503, the rate limiter) are switched on through the sandbox's `/__sandbox/faults` and cleared
after; with `--no-faults` those checks are skipped (for a base URL that is not the sandbox).

Prints one line per check (`PASS name: detail` / `FAIL name: reason`) and exits 0 only when all pass.
"""

import argparse
import json
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid

try:
    import hubspot
    from hubspot.crm import contacts as hs_contacts
    from hubspot.crm import deals as hs_deals
    from hubspot.crm import properties as hs_properties
    from hubspot.crm.associations import v4 as hs_assoc
    from hubspot.crm.objects import calls as hs_calls
    from hubspot.crm.objects import communications as hs_communications
    from hubspot.crm.objects import emails as hs_emails
    from hubspot.crm.objects import meetings as hs_meetings
    from hubspot.crm.objects import notes as hs_notes
    from hubspot.crm.objects import tasks as hs_tasks
except ImportError as e:  # pragma: no cover
    print(f"FAIL import: hubspot-api-client is not installed ({e}); run scripts/install-test-tools", flush=True)
    sys.exit(2)


class Failed(Exception):
    """A check's expectation did not hold."""


class Skipped(Exception):
    """A check that cannot run here (not a failure)."""


def need(cond, message):
    if not cond:
        raise Failed(message)


def typed(obj, cls, what="answer"):
    """`obj` is an instance of the official model `cls` (and serialises back through it)."""
    need(obj is not None, f"{what}: the client returned no object (status not in the client's response map?)")
    need(isinstance(obj, cls), f"{what}: expected {cls.__module__}.{cls.__name__}, got {type(obj).__name__}")
    obj.to_dict()
    return obj


class _Body:
    """What `ApiClient.deserialize` reads: an object with `.data`."""

    def __init__(self, data):
        self.data = data


def error_model(api, body_text, model="Error"):
    """Deserializes an error body into the client's own `Error` model (refuses missing required fields)."""
    try:
        parsed = json.loads(body_text)
    except (TypeError, ValueError) as e:
        raise Failed(f"error body is not JSON ({e}): {str(body_text)[:200]!r}")
    need(isinstance(parsed, dict), f"error body is not a JSON object: {str(body_text)[:200]!r}")
    try:
        err = api.api_client.deserialize(_Body(body_text), model)
    except (ValueError, TypeError) as e:
        raise Failed(f"the official {model} model refused the error body ({e}): {str(body_text)[:300]}")
    return parsed, err


def expect_error(api, call, status, category=None, model="Error"):
    """`call()` raises the module's ApiException with `status`; its body parses into the `Error` model."""
    exc_type = sys.modules[type(api).__module__.rsplit(".api.", 1)[0] + ".exceptions"].ApiException
    try:
        got = call()
    except exc_type as e:
        need(e.status == status, f"expected HTTP {status}, got {e.status}: {str(e.body)[:300]}")
        if model is None:
            try:
                parsed = json.loads(e.body)
            except (TypeError, ValueError) as je:
                raise Failed(f"error body is not JSON ({je}): {str(e.body)[:200]!r}")
            return e, parsed, None
        parsed, err = error_model(api, e.body, model)
        if category is not None:
            need(err.category == category, f"expected category {category}, got {err.category}: {e.body[:300]}")
        need(err.correlation_id, "error has no correlationId")
        need(err.message, "error has no message")
        return e, parsed, err
    raise Failed(f"expected ApiException with HTTP {status}, the call returned {type(got).__name__}")


def admin(base_url, method, path, body=None):
    """A sandbox admin call (`/__sandbox/…`, no token), plain urllib."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base_url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        raise Failed(f"sandbox admin {method} {path} answered {e.code}: {e.read()[:200]!r}")
    except urllib.error.URLError as e:
        raise Failed(f"sandbox admin {method} {path} failed: {e.reason}")


# (module, path segment, contact association type id (object → contact), contact → object type id, properties)
ENGAGEMENTS = [
    ("notes", hs_notes, 202, 201, {"hs_note_body": "Conformance note"}),
    (
        "calls",
        hs_calls,
        194,
        193,
        {
            "hs_call_title": "Conformance call",
            "hs_call_body": "Called back",
            "hs_call_direction": "OUTBOUND",
            "hs_call_status": "COMPLETED",
            "hs_call_duration": "60000",
        },
    ),
    (
        "emails",
        hs_emails,
        198,
        197,
        {
            "hs_email_direction": "EMAIL",
            "hs_email_subject": "Conformance email",
            "hs_email_text": "Hello",
            "hs_email_status": "SENT",
        },
    ),
    (
        "meetings",
        hs_meetings,
        200,
        199,
        {
            "hs_meeting_title": "Conformance meeting",
            "hs_meeting_body": "Showroom visit",
            "hs_meeting_start_time": "2026-01-05T10:00:00.000Z",
            "hs_meeting_end_time": "2026-01-05T11:00:00.000Z",
            "hs_meeting_outcome": "SCHEDULED",
        },
    ),
    (
        "tasks",
        hs_tasks,
        204,
        203,
        {
            "hs_task_subject": "Conformance task",
            "hs_task_body": "Follow up",
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH",
            "hs_task_type": "TODO",
        },
    ),
    (
        "communications",
        hs_communications,
        81,
        82,
        {
            "hs_communication_channel_type": "SMS",
            "hs_communication_logged_from": "CRM",
            "hs_communication_body": "Conformance SMS",
        },
    ),
]

TIMESTAMP = "2026-01-05T09:30:00.000Z"

# PortalInformationResponse, required fields and JSON types, from HubSpot's published account-info spec
# (PublicApiSpecs/Account/Account Info/…/v3/accountInfo.json).
PORTAL_INFORMATION = {
    "accountType": str,
    "additionalCurrencies": list,
    "companyCurrency": str,
    "dataHostingLocation": str,
    "portalId": int,
    "timeZone": str,
    "uiDomain": str,
    "utcOffset": str,
    "utcOffsetMilliseconds": int,
}
ACCOUNT_TYPES = ["APP_DEVELOPER", "DEVELOPER_TEST", "SANDBOX", "STANDARD"]


def make_client(token, base_url):
    """The official client, every API pointed at `base_url` (DiscoveryBase sets each keyword on each API's
    Configuration). `client_side_validation`, off by default in hubspot-api-client, makes the generated
    models refuse an answer without a field the published spec requires, or with an unknown enum value."""
    return hubspot.Client.create(access_token=token, host=base_url, client_side_validation=True)


class Conformance:
    def __init__(self, base_url, token, faults=True):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.faults = faults
        self.client = make_client(token, self.base_url)
        self.run_id = uuid.uuid4().hex[:12]
        self.state = {}
        self.results = []

    def email(self, tag):
        return f"conformance-{tag}-{self.run_id}@example.com"

    def got(self, key):
        if key not in self.state:
            raise Failed(f"needs {key!r}, which an earlier check did not produce")
        return self.state[key]

    def run(self, name, fn):
        try:
            detail = fn() or ""
            self.results.append((name, "PASS", detail))
            print(f"PASS {name}: {detail}", flush=True)
        except Skipped as e:
            self.results.append((name, "SKIP", str(e)))
            print(f"SKIP {name}: {e}", flush=True)
        except Failed as e:
            self.results.append((name, "FAIL", str(e)))
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # an exception from the client: a refused model, an unexpected ApiException
            body = getattr(e, "body", None)
            where = traceback.extract_tb(e.__traceback__)[-1]
            reason = f"{type(e).__name__}: {str(e).strip()[:400]}"
            if isinstance(e, ValueError) and "/models/" in where.filename:
                reason = f"the official model {where.filename.rsplit('/', 1)[-1]} refused the answer: {reason}"
            if body:
                reason += f" | body: {str(body)[:300]}"
            reason += f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
            self.results.append((name, "FAIL", reason))
            print(f"FAIL {name}: {reason}", flush=True)

    # ----- setup ---------------------------------------------------------------------------------------

    def check_host(self):
        for api in [self.client.crm.contacts.batch_api, self.client.crm.associations.v4.basic_api]:
            host = api.api_client.configuration.host
            need(host == self.base_url, f"{type(api).__module__} would call {host}, not {self.base_url}")
            need(api.api_client.configuration.client_side_validation, "client-side validation is off")
        return f"every API calls {self.base_url}, client-side validation on"

    # ----- contacts: batch upsert by email -------------------------------------------------------------

    def upsert(self, inputs):
        body = hs_contacts.BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                hs_contacts.SimplePublicObjectBatchInputUpsert(
                    id=email, id_property="email", object_write_trace_id=trace, properties=props
                )
                for email, trace, props in inputs
            ]
        )
        return self.client.crm.contacts.batch_api.upsert_with_http_info(body)

    def check_upsert_200(self):
        a, b = self.email("a"), self.email("b")
        res, status, _ = self.upsert([(a, "0", {"firstname": "Ada"}), (b, "1", {"firstname": "Bea"})])
        need(status == 200, f"expected 200, got {status}")
        typed(res, hs_contacts.BatchResponseSimplePublicUpsertObject)
        need(res.status == "COMPLETE", f"status {res.status}")
        need(len(res.results) == 2, f"{len(res.results)} results for 2 inputs")
        by_trace = {}
        for r in res.results:
            typed(r, hs_contacts.SimplePublicUpsertObject, "result")
            need(r.new is True, f"result {r.id}: new={r.new} for a new email")
            by_trace[r.object_write_trace_id] = r
        need(set(by_trace) == {"0", "1"}, f"objectWriteTraceId of the results: {sorted(by_trace, key=str)}")
        need(by_trace["0"].properties.get("email") == a, f"result 0 email {by_trace['0'].properties.get('email')}")
        self.state.update(contact_a=by_trace["0"].id, email_a=a, contact_b=by_trace["1"].id, email_b=b)
        # The same email again: an update of the same record.
        res, status, _ = self.upsert([(a, "0", {"lastname": "Lovelace"})])
        need(status == 200, f"second upsert: expected 200, got {status}")
        typed(res, hs_contacts.BatchResponseSimplePublicUpsertObject)
        r = typed(res.results[0], hs_contacts.SimplePublicUpsertObject, "result")
        need(r.new is False and r.id == self.state["contact_a"], f"second upsert: id {r.id} new={r.new}")
        return f"created {self.state['contact_a']}, {self.state['contact_b']}; re-upsert updated (new=false)"

    def check_upsert_207_property(self):
        good, bad = self.email("good207"), self.email("bad207")
        res, status, _ = self.upsert([(good, "0", {"firstname": "Gus"}), (bad, "1", {"no_such_prop_x": "1"})])
        need(status == 207, f"expected 207, got {status}")
        typed(res, hs_contacts.BatchResponseSimplePublicUpsertObjectWithErrors)
        need(len(res.results) == 1 and res.results[0].object_write_trace_id == "0", "the valid input not stored")
        typed(res.results[0], hs_contacts.SimplePublicUpsertObject, "result")
        need(res.num_errors == len(res.errors) == 1, f"numErrors {res.num_errors}, errors {len(res.errors or [])}")
        err = typed(res.errors[0], hs_contacts.StandardError, "errors[0]")
        need(err.context.get("objectWriteTraceId") == ["1"], f"errors[0].context {err.context}")
        need(err.category == "VALIDATION_ERROR", f"errors[0].category {err.category}")
        codes = [typed(d, hs_contacts.ErrorDetail, "errors[0].errors[]").code for d in err.errors]
        need("PROPERTY_DOESNT_EXIST" in codes, f"errors[0].errors codes {codes}")
        self.state.update(email_207_bad=bad, email_207_good=good)
        return "BatchResponseSimplePublicUpsertObjectWithErrors; errors[0] StandardError names trace id 1"

    def check_upsert_207_other(self):
        good, bad = self.email("good207b"), self.email("bad207b")
        other = self.email("other")
        res, status, _ = self.upsert([(good, "0", {}), (bad, "1", {"email": other})])
        need(status == 207, f"expected 207, got {status}")
        typed(res, hs_contacts.BatchResponseSimplePublicUpsertObjectWithErrors)
        err = typed(res.errors[0], hs_contacts.StandardError, "errors[0]")
        need(err.context.get("objectWriteTraceId") == ["1"], f"errors[0].context {err.context}")
        return "refusal that is not a property issue (email differs from id): StandardError accepted"

    def check_upsert_400_untraced(self):
        api = self.client.crm.contacts.batch_api
        body = hs_contacts.BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                hs_contacts.SimplePublicObjectBatchInputUpsert(
                    id=self.email("untraced"), id_property="email", properties={"no_such_prop_x": "1"}
                )
            ]
        )
        _, _, err = expect_error(api, lambda: api.upsert(body), 400, "VALIDATION_ERROR")
        need(err.errors and err.errors[0].code == "PROPERTY_DOESNT_EXIST", f"errors {err.errors}")
        return "no trace ids: whole batch 400, Error model with errors[].code PROPERTY_DOESNT_EXIST"

    def check_upsert_207_stored(self):
        api = self.client.crm.contacts.basic_api
        good = api.get_by_id(self.got("email_207_good"), id_property="email", properties=["email"])
        typed(good, hs_contacts.SimplePublicObjectWithAssociations)
        expect_error(
            api,
            lambda: api.get_by_id(self.got("email_207_bad"), id_property="email", properties=["email"]),
            404,
            "OBJECT_NOT_FOUND",
        )
        return "the valid input of the 207 was stored, the refused one not"

    # ----- contacts: read, update, list -----------------------------------------------------------------

    def check_get_by_email(self):
        api = self.client.crm.contacts.basic_api
        c = api.get_by_id(self.got("email_a"), id_property="email", properties=["email"])
        typed(c, hs_contacts.SimplePublicObjectWithAssociations)
        need(c.id == self.got("contact_a"), f"id {c.id}, expected {self.state['contact_a']}")
        need(c.properties.get("email") == self.state["email_a"], f"properties {c.properties}")
        need(c.created_at is not None and c.updated_at is not None, "createdAt/updatedAt")
        return f"SimplePublicObjectWithAssociations id {c.id}"

    def check_get_by_email_404(self):
        api = self.client.crm.contacts.basic_api
        expect_error(
            api,
            lambda: api.get_by_id(self.email("nobody"), id_property="email", properties=["email"]),
            404,
            "OBJECT_NOT_FOUND",
        )
        return "ApiException 404, Error category OBJECT_NOT_FOUND"

    def check_get_by_id(self):
        api = self.client.crm.contacts.basic_api
        c = api.get_by_id(self.got("contact_a"), properties=["email", "firstname", "lastname"])
        typed(c, hs_contacts.SimplePublicObjectWithAssociations)
        need(c.properties.get("lastname") == "Lovelace", f"properties {c.properties}")
        return f"id {c.id} with properties"

    def check_archive(self):
        api = self.client.crm.contacts.basic_api
        email = self.email("archived")
        res, _, _ = self.upsert([(email, "0", {"firstname": "Arch"})])
        cid = res.results[0].id
        _, status, _ = api.archive_with_http_info(cid)
        need(status == 204, f"archive answered {status}")
        expect_error(api, lambda: api.get_by_id(cid), 404, "OBJECT_NOT_FOUND")
        c = api.get_by_id(cid, properties=["firstname"], archived=True)
        typed(c, hs_contacts.SimplePublicObjectWithAssociations)
        need(c.archived is True and c.archived_at is not None, f"archived {c.archived} at {c.archived_at}")
        need(c.properties.get("firstname") == "Arch", f"properties {c.properties}")
        expect_error(api, lambda: api.archive(cid), 404, "OBJECT_NOT_FOUND")
        return "204, then 404 unless archived=true (SimplePublicObjectWithAssociations, archivedAt)"

    def check_list_contacts(self):
        page = self.client.crm.contacts.basic_api.get_page(limit=1)
        typed(page, hs_contacts.CollectionResponseSimplePublicObjectWithAssociationsForwardPaging)
        need(len(page.results) == 1, f"{len(page.results)} results for limit=1")
        typed(page.results[0], hs_contacts.SimplePublicObjectWithAssociations, "results[0]")
        need(page.paging is not None and page.paging.next is not None, "more contacts exist but no paging.next")
        typed(page.paging.next, hs_contacts.NextPage, "paging.next")
        return "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging with paging.next"

    def check_update(self):
        api = self.client.crm.contacts.basic_api
        c = api.update(self.got("contact_a"), hs_contacts.SimplePublicObjectInput(properties={"firstname": "Augusta"}))
        typed(c, hs_contacts.SimplePublicObject)
        need(c.id == self.state["contact_a"], f"id {c.id}")
        need(c.properties.get("firstname") == "Augusta", f"properties {c.properties}")
        return f"SimplePublicObject id {c.id}"

    def check_update_404(self):
        api = self.client.crm.contacts.basic_api
        body = hs_contacts.SimplePublicObjectInput(properties={"firstname": "X"})
        expect_error(api, lambda: api.update("987654321098", body), 404, "OBJECT_NOT_FOUND")
        return "unknown id: ApiException 404, Error OBJECT_NOT_FOUND"

    def check_update_400(self):
        api = self.client.crm.contacts.basic_api
        body = hs_contacts.SimplePublicObjectInput(properties={"no_such_prop_x": "1"})
        _, _, err = expect_error(api, lambda: api.update(self.got("contact_a"), body), 400, "VALIDATION_ERROR")
        need(err.errors, "no errors[] naming the property")
        d = typed(err.errors[0], hs_contacts.ErrorDetail, "errors[0]")
        need(d.code == "PROPERTY_DOESNT_EXIST", f"errors[0].code {d.code}")
        return "unknown property: ApiException 400, Error with errors[].code PROPERTY_DOESNT_EXIST"

    def check_batch_read(self):
        api = self.client.crm.contacts.batch_api
        body = hs_contacts.BatchReadInputSimplePublicObjectId(
            id_property="email",
            properties=["email"],
            properties_with_history=[],
            inputs=[
                hs_contacts.SimplePublicObjectId(id=self.got("email_a")),
                hs_contacts.SimplePublicObjectId(id=self.email("missing")),
            ],
        )
        res, status, _ = api.read_with_http_info(body)
        need(status == 207, f"expected 207 (one id missing), got {status}")
        typed(res, hs_contacts.BatchResponseSimplePublicObjectWithErrors)
        need(len(res.results) == 1, f"{len(res.results)} results")
        typed(res.results[0], hs_contacts.SimplePublicObject, "results[0]")
        err = typed(res.errors[0], hs_contacts.StandardError, "errors[0]")
        need(err.category == "OBJECT_NOT_FOUND", f"errors[0].category {err.category}")
        return "BatchResponseSimplePublicObjectWithErrors; errors[0] StandardError OBJECT_NOT_FOUND"

    # ----- contacts: search -----------------------------------------------------------------------------

    def search(self, filters=None, query=None, limit=10, after=None):
        time.sleep(0.21)  # HubSpot takes five searches a second per token
        groups = [hs_contacts.FilterGroup(filters=[hs_contacts.Filter(**f) for f in filters])] if filters else None
        body = hs_contacts.PublicObjectSearchRequest(
            filter_groups=groups, query=query, properties=["email", "firstname"], limit=limit, after=after,
            sorts=["hs_object_id"],
        )
        res, status, headers = self.client.crm.contacts.search_api.do_search_with_http_info(body)
        need(status == 200, f"expected 200, got {status}")
        return typed(res, hs_contacts.CollectionResponseWithTotalSimplePublicObjectForwardPaging), headers

    def check_search(self):
        fresh = self.email("search")
        self.upsert([(fresh, "0", {"firstname": "Sol"})])
        by_email = [{"property_name": "email", "operator": "EQ", "value": fresh}]
        if self.faults:
            res, headers = self.search(by_email)
            need(res.total == 0, f"a contact written just now is found ({res.total}): the index lags writes")
            need(not any(h.lower().startswith("x-hubspot-ratelimit") for h in headers),
                 "search answers carry no rate-limit headers")
        deadline = time.time() + 10
        while True:
            res, _ = self.search(by_email)
            if res.total == 1 or time.time() > deadline:
                break
        need(res.total == 1, f"not found within 10 s: total {res.total}")
        hit = typed(res.results[0], hs_contacts.SimplePublicObject, "results[0]")
        need(hit.properties.get("firstname") == "Sol", f"properties {hit.properties}")
        page, _ = self.search(query=self.run_id, limit=1)
        need(page.total >= 2, f"query {self.run_id!r} found {page.total}")
        nxt = typed(page.paging, hs_contacts.ForwardPaging, "paging")
        need(nxt.next.after == "1", f"paging.next.after {nxt.next.after!r}")
        second, _ = self.search(query=self.run_id, limit=1, after=nxt.next.after)
        need(second.results[0].id != page.results[0].id, "the second page repeats the first")
        expect_error(self.client.crm.contacts.search_api, lambda: self.search(
            [{"property_name": "email", "operator": "LIKE", "value": "x"}]), 400, "VALIDATION_ERROR")
        return f"CollectionResponseWithTotalSimplePublicObjectForwardPaging; found after the index lag; paged; 400"

    # ----- properties ------------------------------------------------------------------------------------

    def check_list_properties(self):
        res = self.client.crm.properties.core_api.get_all(object_type="contacts")
        typed(res, hs_properties.CollectionResponsePropertyNoPaging)
        names = set()
        for p in res.results:
            typed(p, hs_properties.ModelProperty, f"property {getattr(p, 'name', '?')}")
            for o in p.options:
                typed(o, hs_properties.Option, f"option of {p.name}")
            names.add(p.name)
        need({"email", "firstname", "lifecyclestage"} <= names, f"built-ins missing from {sorted(names)[:10]}…")
        return f"CollectionResponsePropertyNoPaging, {len(res.results)} ModelProperty"

    def check_create_property(self):
        api = self.client.crm.properties.core_api
        name = f"conformance_{self.run_id}"
        body = hs_properties.PropertyCreate(
            name=name,
            label="Conformance",
            type="enumeration",
            field_type="select",
            group_name="contactinformation",
            description="made by tests/conformance/official_client.py",
            options=[
                hs_properties.OptionInput(label="One", value="one", display_order=0, hidden=False),
                hs_properties.OptionInput(label="Two", value="two", display_order=1, hidden=False),
            ],
        )
        p, status, _ = api.create_with_http_info("contacts", body)
        need(status == 201, f"expected 201, got {status}")
        typed(p, hs_properties.ModelProperty)
        need(p.name == name and p.type == "enumeration", f"name {p.name} type {p.type}")
        need([o.value for o in p.options] == ["one", "two"], f"options {p.options}")
        self.state["property"] = (name, body)
        # The new property is usable on a contact.
        c = self.client.crm.contacts.basic_api.update(
            self.got("contact_a"), hs_contacts.SimplePublicObjectInput(properties={name: "two"})
        )
        need(c.properties.get(name) == "two", f"contact after setting {name}: {c.properties}")
        return f"201 ModelProperty {name}; settable on a contact"

    def check_create_property_409(self):
        api = self.client.crm.properties.core_api
        name, body = self.got("property")
        expect_error(api, lambda: api.create("contacts", body), 409, "OBJECT_ALREADY_EXISTS")
        return "existing name: ApiException 409, Error OBJECT_ALREADY_EXISTS"

    # ----- engagements ------------------------------------------------------------------------------------

    def engagement_body(self, mod, type_id, contact_id, props):
        return mod.SimplePublicObjectInputForCreate(
            properties=dict(props, hs_timestamp=TIMESTAMP),
            associations=[
                mod.PublicAssociationsForObject(
                    to=mod.PublicObjectId(id=contact_id),
                    types=[mod.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=type_id)],
                )
            ],
        )

    def check_engagement(self, path, mod, type_id, props):
        api = getattr(self.client.crm.objects, path).basic_api
        contact = self.got("contact_a")
        created, status, _ = api.create_with_http_info(self.engagement_body(mod, type_id, contact, props))
        need(status == 201, f"create: expected 201, got {status}")
        typed(created, mod.SimplePublicObject, "create")
        need(created.id, "create answered no id")
        names = sorted(set(props) | {"hs_timestamp"})
        read = api.get_by_id(created.id, properties=names, associations=["contacts"])
        typed(read, mod.SimplePublicObjectWithAssociations, "read")
        need(read.id == created.id, f"read id {read.id}")
        for k, v in props.items():
            need(read.properties.get(k) == v, f"read: {k}={read.properties.get(k)!r}, sent {v!r}")
        need(read.properties.get("hs_timestamp"), "read: no hs_timestamp")
        assoc = (read.associations or {}).get("contacts")
        need(assoc is not None, f"read: no associations.contacts in {read.associations}")
        typed(assoc, mod.CollectionResponseAssociatedId, "associations.contacts")
        ids = [typed(a, mod.AssociatedId, "associations.contacts.results[]").id for a in assoc.results]
        need(ids == [contact], f"associations.contacts ids {ids}, expected [{contact}]")
        self.state.setdefault("engagements", {})[path] = created.id
        return f"201 {created.id} (type {type_id}); read back with properties and associations.contacts"

    def check_engagement_errors(self):
        api = self.client.crm.objects.notes.basic_api
        missing_contact = self.engagement_body(hs_notes, 202, "987654321098", {"hs_note_body": "x"})
        expect_error(api, lambda: api.create(missing_contact), 400, "VALIDATION_ERROR")
        wrong_type = self.engagement_body(hs_notes, 194, self.got("contact_a"), {"hs_note_body": "x"})
        expect_error(api, lambda: api.create(wrong_type), 400, "VALIDATION_ERROR")
        empty = hs_notes.SimplePublicObjectInputForCreate(properties={}, associations=[])
        expect_error(api, lambda: api.create(empty), 400, "VALIDATION_ERROR")
        expect_error(api, lambda: api.get_by_id("987654321098"), 404, "OBJECT_NOT_FOUND")
        return "400 for a missing contact, a wrong type id, no hs_timestamp; 404 for an unknown id"

    # ----- associations -----------------------------------------------------------------------------------

    def check_assoc_v4_paging(self):
        contact = self.got("contact_a")
        note_api = self.client.crm.objects.notes.basic_api
        notes = [self.got("engagements")["notes"]] if "notes" in self.state.get("engagements", {}) else []
        while len(notes) < 3:
            n = note_api.create(self.engagement_body(hs_notes, 202, contact, {"hs_note_body": f"n{len(notes)}"}))
            notes.append(n.id)
        self.state["notes"] = notes
        api = self.client.crm.associations.v4.basic_api
        seen, after, pages = [], None, 0
        while True:
            kwargs = {"limit": 2}
            if after is not None:
                kwargs["after"] = after
            page = api.get_page("contacts", contact, "notes", **kwargs)
            pages += 1
            typed(page, hs_assoc.CollectionResponseMultiAssociatedObjectWithLabelForwardPaging, f"page {pages}")
            need(len(page.results) <= 2, f"page {pages}: {len(page.results)} results for limit=2")
            for r in page.results:
                typed(r, hs_assoc.MultiAssociatedObjectWithLabel, "results[]")
                t = typed(r.association_types[0], hs_assoc.AssociationSpecWithLabel, "associationTypes[0]")
                need(t.category == "HUBSPOT_DEFINED" and t.type_id == 201, f"contact → note type {t.category} {t.type_id}")
                seen.append(str(r.to_object_id))
            if page.paging is None or page.paging.next is None:
                break
            typed(page.paging, hs_assoc.ForwardPaging, "paging")
            typed(page.paging.next, hs_assoc.NextPage, "paging.next")
            after = page.paging.next.after
            need(pages < 10, "paging does not end")
        need(pages >= 2, f"{len(notes)} notes with limit=2 came in {pages} page(s)")
        need(sorted(seen) == sorted(notes), f"note ids {seen}, expected {notes}")
        return f"{len(seen)} notes in {pages} pages of 2, followed by paging.next.after"

    def check_assoc_v4_other(self):
        api = self.client.crm.associations.v4.basic_api
        note = self.got("notes")[0]
        page = api.get_page("notes", note, "contacts")
        typed(page, hs_assoc.CollectionResponseMultiAssociatedObjectWithLabelForwardPaging)
        got = [(str(r.to_object_id), r.association_types[0].type_id) for r in page.results]
        need(got == [(self.state["contact_a"], 202)], f"note → contacts {got}")
        for path, _mod, type_id, back_id, _props in ENGAGEMENTS[1:]:
            page = api.get_page("contacts", self.state["contact_a"], path)
            typed(page, hs_assoc.CollectionResponseMultiAssociatedObjectWithLabelForwardPaging, path)
            ids = [str(r.to_object_id) for r in page.results]
            want = self.state.get("engagements", {}).get(path)
            need(want in ids, f"contact → {path}: {ids}, expected {want}")
            need(page.results[0].association_types[0].type_id == back_id, f"contact → {path} type id")
        return "note → contact (202) and contact → calls/emails/meetings/tasks/communications"

    def check_assoc_v4_404(self):
        api = self.client.crm.associations.v4.basic_api
        expect_error(api, lambda: api.get_page("contacts", "987654321098", "notes"), 404, "OBJECT_NOT_FOUND")
        return "unknown contact: ApiException 404, Error OBJECT_NOT_FOUND"

    def check_assoc_batch_read(self):
        api = self.client.crm.associations.v4.batch_api
        contact = self.got("contact_a")
        body = hs_assoc.BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[hs_assoc.PublicFetchAssociationsBatchRequest(id=contact)]
        )
        res, status, _ = api.get_page_with_http_info("contacts", "notes", body)
        need(status == 200, f"expected 200, got {status}")
        typed(res, hs_assoc.BatchResponsePublicAssociationMultiWithLabel)
        r = typed(res.results[0], hs_assoc.PublicAssociationMultiWithLabel, "results[0]")
        need(str(r._from.id) == contact, f"results[0].from.id {r._from.id}")
        ids = sorted(str(typed(t, hs_assoc.MultiAssociatedObjectWithLabel, "to[]").to_object_id) for t in r.to)
        need(ids == sorted(self.got("notes")), f"to ids {ids}")
        # An unknown id and a contact without notes: 207.
        body = hs_assoc.BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[
                hs_assoc.PublicFetchAssociationsBatchRequest(id=contact),
                hs_assoc.PublicFetchAssociationsBatchRequest(id="987654321098"),
                hs_assoc.PublicFetchAssociationsBatchRequest(id=self.got("contact_b")),
            ]
        )
        res, status, _ = api.get_page_with_http_info("contacts", "notes", body)
        need(status == 207, f"expected 207, got {status}")
        typed(res, hs_assoc.BatchResponsePublicAssociationMultiWithLabelWithErrors)
        need(len(res.results) == 1, f"{len(res.results)} results")
        cats = sorted(typed(e, hs_assoc.StandardError, "errors[]").category for e in res.errors)
        need(cats == ["OBJECT_NOT_FOUND", "VALIDATION_ERROR"], f"error categories {cats}")
        return "200 BatchResponsePublicAssociationMultiWithLabel; 207 …WithErrors, StandardError entries"

    # ----- deals ------------------------------------------------------------------------------------------

    def check_deal(self):
        api = self.client.crm.deals.basic_api
        contact = self.got("contact_a")
        body = hs_deals.SimplePublicObjectInputForCreate(
            properties={"dealname": f"Conformance {self.run_id}", "dealstage": "appointmentscheduled",
                        "pipeline": "default", "amount": "1500"},
            associations=[
                hs_deals.PublicAssociationsForObject(
                    to=hs_deals.PublicObjectId(id=contact),
                    types=[hs_deals.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=3)],
                )
            ],
        )
        created, status, _ = api.create_with_http_info(body)
        need(status == 201, f"create: expected 201, got {status}")
        typed(created, hs_deals.SimplePublicObject, "create")
        deal = created.id
        read = api.get_by_id(deal, properties=["dealname", "dealstage", "amount"], associations=["contacts"])
        typed(read, hs_deals.SimplePublicObjectWithAssociations, "read")
        need(read.properties.get("dealstage") == "appointmentscheduled", f"read properties {read.properties}")
        assoc = typed((read.associations or {}).get("contacts"), hs_deals.CollectionResponseAssociatedId,
                      "associations.contacts")
        ids = [typed(a, hs_deals.AssociatedId, "associations.contacts.results[]").id for a in assoc.results]
        need(ids == [contact], f"associations.contacts {ids}")
        updated = api.update(deal, hs_deals.SimplePublicObjectInput(properties={"dealstage": "closedwon"}))
        typed(updated, hs_deals.SimplePublicObject, "update")
        need(updated.properties.get("dealstage") == "closedwon", f"update properties {updated.properties}")
        again = api.get_by_id(deal, properties=["dealstage"])
        need(again.properties.get("dealstage") == "closedwon", f"read after update {again.properties}")
        page = self.client.crm.associations.v4.basic_api.get_page("deals", deal, "contacts")
        typed(page, hs_assoc.CollectionResponseMultiAssociatedObjectWithLabelForwardPaging, "deal → contacts")
        got = [(str(r.to_object_id), r.association_types[0].type_id) for r in page.results]
        need(got == [(contact, 3)], f"v4 deal → contacts {got}")
        self.state["deal"] = deal
        return f"201 {deal} (type 3); read with associations.contacts; PATCH dealstage; v4 deal → contact"

    def check_deal_errors(self):
        api = self.client.crm.deals.basic_api
        expect_error(api, lambda: api.get_by_id("987654321098", properties=["dealstage"]), 404, "OBJECT_NOT_FOUND")
        body = hs_deals.SimplePublicObjectInput(properties={"dealstage": "closedwon"})
        expect_error(api, lambda: api.update("0", body), 404, "OBJECT_NOT_FOUND")
        no_stage = hs_deals.SimplePublicObjectInputForCreate(properties={"dealname": "x"}, associations=[])
        expect_error(api, lambda: api.create(no_stage), 400, "VALIDATION_ERROR")
        return "404 read/PATCH of unknown ids; 400 create without dealstage"

    # ----- account info -----------------------------------------------------------------------------------

    def check_account_info(self):
        res = self.client.api_request(
            {"method": "GET", "path": "/account-info/v3/details", "base_url": self.base_url}
        )
        need(res.status_code == 200, f"expected 200, got {res.status_code}: {res.text[:200]}")
        body = res.json()
        for field, kind in PORTAL_INFORMATION.items():
            need(field in body, f"PortalInformationResponse requires {field}: {body}")
            ok = isinstance(body[field], kind) and not (kind is int and isinstance(body[field], bool))
            need(ok, f"{field} is {type(body[field]).__name__}, expected {kind.__name__}")
        need(body["accountType"] in ACCOUNT_TYPES, f"accountType {body['accountType']}")
        need(all(isinstance(c, str) for c in body["additionalCurrencies"]), "additionalCurrencies items")
        return f"portal {body['portalId']}, {body['timeZone']} (no model in the client: checked against the spec)"

    # ----- auth and faults --------------------------------------------------------------------------------

    def check_401(self):
        wrong = make_client("wrong-" + self.run_id, self.base_url)
        checked = []
        calls = [
            ("contacts", wrong.crm.contacts.basic_api, lambda api: api.get_page(limit=1)),
            ("properties", wrong.crm.properties.core_api, lambda api: api.get_all(object_type="contacts")),
            ("notes", wrong.crm.objects.notes.basic_api, lambda api: api.get_by_id("1")),
            ("associations v4", wrong.crm.associations.v4.basic_api,
             lambda api: api.get_page("contacts", "1", "notes")),
            ("deals", wrong.crm.deals.basic_api, lambda api: api.get_by_id("1")),
        ]
        for name, api, call in calls:
            e, _, _ = expect_error(api, lambda: call(api), 401, "INVALID_AUTHENTICATION")
            need(type(e).__name__ == "UnauthorizedException", f"{name}: {type(e).__name__}")
            checked.append(name)
        return f"UnauthorizedException 401, Error INVALID_AUTHENTICATION ({', '.join(checked)})"

    def with_faults(self, faults, fn):
        if not self.faults:
            raise Skipped("--no-faults")
        admin(self.base_url, "POST", "/__sandbox/faults", faults)
        try:
            return fn()
        finally:
            admin(self.base_url, "DELETE", "/__sandbox/faults")

    def rate_limit_body(self, body, e):
        for field in ["status", "message", "errorType", "correlationId", "policyName"]:
            need(body.get(field), f"429 body has no {field}: {body}")
        need(body["errorType"] == "RATE_LIMIT", f"errorType {body['errorType']}")
        need(e.headers is not None, "429 without headers")

    def check_429(self):
        api = self.client.crm.contacts.basic_api

        def call():
            e, body, _ = expect_error(api, lambda: api.get_page(limit=1), 429, model=None)
            self.rate_limit_body(body, e)
            return body["policyName"]

        policy = self.with_faults({"failure_rate": 1.0, "failure_status": 429}, call)
        return f"injected: ApiException 429, RATE_LIMIT body (policyName {policy})"

    def check_429_limiter(self):
        api = self.client.crm.contacts.basic_api

        def call():
            # The requests of this run already fill a window of 1.
            e, body, _ = expect_error(api, lambda: api.get_page(limit=1), 429, model=None)
            self.rate_limit_body(body, e)
            need(body["policyName"] == "TEN_SECONDLY_ROLLING", f"policyName {body['policyName']}")
            headers = {k.lower(): v for k, v in e.headers.items()}
            need("x-hubspot-ratelimit-max" in headers, f"no X-HubSpot-RateLimit-* headers: {sorted(headers)}")
            return headers["x-hubspot-ratelimit-max"]

        limit = self.with_faults({"requests_per_10s": 1}, call)
        return f"rate limiter: ApiException 429 TEN_SECONDLY_ROLLING, x-hubspot-ratelimit-max {limit}"

    def check_503(self):
        api = self.client.crm.contacts.basic_api

        def call():
            _, _, err = expect_error(api, lambda: api.get_page(limit=1), 503)
            return err.category

        category = self.with_faults({"failure_rate": 1.0, "failure_status": 503}, call)
        return f"injected: ApiException 503, Error category {category}"

    def check_recovered(self):
        if not self.faults:
            raise Skipped("--no-faults")
        deadline = time.monotonic() + 15
        while True:
            try:
                page = self.client.crm.contacts.basic_api.get_page(limit=1)
                typed(page, hs_contacts.CollectionResponseSimplePublicObjectWithAssociationsForwardPaging)
                return "faults cleared: calls succeed again"
            except hs_contacts.ApiException as e:
                if e.status != 429 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    # -----------------------------------------------------------------------------------------------------

    def all(self):
        self.run("client.host", self.check_host)
        self.run("contacts.batch_upsert.200", self.check_upsert_200)
        self.run("contacts.batch_upsert.207_unknown_property", self.check_upsert_207_property)
        self.run("contacts.batch_upsert.207_other_refusal", self.check_upsert_207_other)
        self.run("contacts.batch_upsert.207_partial_write", self.check_upsert_207_stored)
        self.run("contacts.batch_upsert.400_without_trace_ids", self.check_upsert_400_untraced)
        self.run("contacts.get_by_email.200", self.check_get_by_email)
        self.run("contacts.get_by_email.404", self.check_get_by_email_404)
        self.run("contacts.get_by_id.200", self.check_get_by_id)
        self.run("contacts.archive.204", self.check_archive)
        self.run("contacts.list.200", self.check_list_contacts)
        self.run("contacts.update.200", self.check_update)
        self.run("contacts.update.404", self.check_update_404)
        self.run("contacts.update.400_unknown_property", self.check_update_400)
        self.run("contacts.batch_read.207", self.check_batch_read)
        self.run("contacts.search.200_400", self.check_search)
        self.run("properties.list.200", self.check_list_properties)
        self.run("properties.create.201", self.check_create_property)
        self.run("properties.create.409", self.check_create_property_409)
        for path, mod, type_id, _back, props in ENGAGEMENTS:
            self.run(f"engagements.{path}.create_read",
                     lambda p=path, m=mod, t=type_id, pr=props: self.check_engagement(p, m, t, pr))
        self.run("engagements.errors", self.check_engagement_errors)
        self.run("associations.v4.contact_notes_paged", self.check_assoc_v4_paging)
        self.run("associations.v4.other_pairs", self.check_assoc_v4_other)
        self.run("associations.v4.404", self.check_assoc_v4_404)
        self.run("associations.v4.batch_read.200_207", self.check_assoc_batch_read)
        self.run("deals.create_read_update", self.check_deal)
        self.run("deals.errors", self.check_deal_errors)
        self.run("account_info.details", self.check_account_info)
        self.run("auth.401_wrong_token", self.check_401)
        self.run("faults.429_injected", self.check_429)
        self.run("faults.503_injected", self.check_503)
        self.run("faults.429_rate_limiter", self.check_429_limiter)
        self.run("faults.cleared", self.check_recovered)
        failed = [r for r in self.results if r[1] == "FAIL"]
        passed = sum(1 for r in self.results if r[1] == "PASS")
        skipped = sum(1 for r in self.results if r[1] == "SKIP")
        print(f"summary: {passed} of {len(self.results)} checks passed ({skipped} skipped) "
              f"with hubspot-api-client {client_version()} against {self.base_url}", flush=True)
        for name, _, reason in failed:
            print(f"  failed {name}: {reason}", flush=True)
        return 1 if failed else 0


def client_version():
    try:
        import importlib.metadata as metadata

        return metadata.version("hubspot-api-client")
    except Exception:  # pragma: no cover
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", required=True, help="the API's base URL, e.g. http://127.0.0.1:8090")
    ap.add_argument("--token", required=True, help="the bearer token the API accepts")
    ap.add_argument("--no-faults", action="store_true", help="skip the checks that need /__sandbox/faults")
    args = ap.parse_args()
    return Conformance(args.base_url, args.token, faults=not args.no_faults).all()


if __name__ == "__main__":
    sys.exit(main())
