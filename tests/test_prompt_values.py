"""Ids quoted in a prompt fill the path parameters they name, on real specs' operation profiles."""

from __future__ import annotations

import pytest

from pipeline.catalogue import Operation, Parameter
from pipeline.profile import profile_operation
from pipeline.prompt_values import fill_from_prompt, prompt_values


def op(method: str, path: str) -> Operation:
    names = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
    params = tuple(Parameter(name=n, location="path", required=True) for n in names)
    return Operation(id=f"{method} {path}", method=method, path=path, parameters=params)


@pytest.mark.parametrize(
    ("prompt", "method", "path", "expected"),
    [
        ("cancel order #W8855135, it has not shipped", "POST", "/orders/{order_id}/cancel", {"order_id": "W8855135"}),
        ("change the seat on reservation EUJUY6", "PUT", "/reservations/{reservation_id}", {"reservation_id": "EUJUY6"}),
        ("weather at the airport with ICAO code EDDF", "GET", "/airports/{icao}/metar", {"icao": "EDDF"}),
        ("power on server 4712", "POST", "/servers/{id}/actions/poweron", {"id": "4712"}),
        ("show me the open issues of torvalds/linux", "GET", "/repos/{owner}/{repo}/issues",
         {"owner": "torvalds", "repo": "linux"}),
        ("trigger the deploy.yml workflow", "POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
         {"workflow_id": "deploy.yml"}),
        ("attach pm_1NzR8s2eZvKYlo2C to this customer", "POST", "/v1/payment_methods/{payment_method}/attach",
         {"payment_method": "pm_1NzR8s2eZvKYlo2C"}),
        ("get invoice in_1Nv8aB2eZvKYlo2C paid", "POST", "/v1/invoices/{invoice}/pay", {"invoice": "in_1Nv8aB2eZvKYlo2C"}),
        ("look at pull request #61", "GET", "/repos/{owner}/{repo}/pulls/{pull_number}", {"pull_number": "61"}),
        ("check the status of change 17", "GET", "/managedZones/{managedZone}/changes/{changeId}", {"changeId": "17"}),
        ("get details about the anime with ID 123456?", "GET", "/anime/{animeId}", {"animeId": "123456"}),
        ("the list of holidays in Japan for 2023", "GET", "/holidays/{country}", {"country": "Japan"}),
    ],
)
def test_a_quoted_value_fills_the_parameter_it_names(prompt, method, path, expected) -> None:
    assert fill_from_prompt(profile_operation(op(method, path)), prompt_values(prompt)) == expected


@pytest.mark.parametrize(
    ("prompt", "path"),
    [
        ("resize the volume to 100 GB", "/volumes/{id}/actions/resize"),  # a size, not a volume
        ("create a release for v2.1", "/repos/{owner}/{repo}/releases/{release_id}"),  # a version, not an id
        ("email the receipt to ana@example.com", "/v1/invoices/{invoice}/send"),  # an address, not an id
        ("add server 4711 as a target", "/load_balancers/{id}/actions/add_target"),  # names a server, not this one
        ("tell me about the anime Naruto", "/anime/{animeId}"),  # a name never fills an id
    ],
)
def test_values_that_name_something_else_fill_nothing(prompt, path) -> None:
    assert fill_from_prompt(profile_operation(op("POST", path)), prompt_values(prompt)) == {}


def test_the_history_wins_over_a_guess_but_not_over_a_linked_value() -> None:
    pay = profile_operation(op("POST", "/v1/invoices/{invoice}/pay"))
    assert fill_from_prompt(pay, prompt_values("pay it, ref #A77812"), known=frozenset({"invoice"})) == {}
    linked = prompt_values("pay invoice in_9Xk2LmQ0 instead")
    assert fill_from_prompt(pay, linked, known=frozenset({"invoice"})) == {"invoice": "in_9Xk2LmQ0"}
