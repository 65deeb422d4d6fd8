"""Ids quoted in a prompt fill the path parameters they name, on real specs' operation profiles."""

from __future__ import annotations

import pytest

from pipeline.ranking.profile import profile_operation
from pipeline.ranking.prompt_values import fill_from_prompt, prompt_values, speaks_for_self
from pipeline.spec.catalogue import Operation, Parameter


def op(method: str, path: str, query_ids: tuple[str, ...] = ()) -> Operation:
    names = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
    params = tuple(Parameter(name=n, location="path", required=True) for n in names)
    params += tuple(Parameter(name=n, location="query", required=True) for n in query_ids)
    return Operation(id=f"{method} {path}", method=method, path=path, parameters=params)


@pytest.mark.parametrize(
    ("prompt", "method", "path", "expected"),
    [
        ("cancel order #W8855135, it has not shipped", "POST", "/orders/{order_id}/cancel", {"order_id": "W8855135"}),
        ("change the seat on reservation EUJUY6", "PUT", "/reservations/{reservation_id}",
         {"reservation_id": "EUJUY6"}),
        ("weather at the airport with ICAO code EDDF", "GET", "/airports/{icao}/metar", {"icao": "EDDF"}),
        ("power on server 4712", "POST", "/servers/{id}/actions/poweron", {"id": "4712"}),
        ("show me the open issues of torvalds/linux", "GET", "/repos/{owner}/{repo}/issues",
         {"owner": "torvalds", "repo": "linux"}),
        ("trigger the deploy.yml workflow", "POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
         {"workflow_id": "deploy.yml"}),
        ("attach pm_1NzR8s2eZvKYlo2C to this customer", "POST", "/v1/payment_methods/{payment_method}/attach",
         {"payment_method": "pm_1NzR8s2eZvKYlo2C"}),
        ("get invoice in_1Nv8aB2eZvKYlo2C paid", "POST", "/v1/invoices/{invoice}/pay",
         {"invoice": "in_1Nv8aB2eZvKYlo2C"}),
        ("look at pull request #61", "GET", "/repos/{owner}/{repo}/pulls/{pull_number}", {"pull_number": "61"}),
        ("check the status of change 17", "GET", "/managedZones/{managedZone}/changes/{changeId}", {"changeId": "17"}),
        ("get details about the anime with ID 123456?", "GET", "/anime/{animeId}", {"animeId": "123456"}),
        ("the list of holidays in Japan for 2023", "GET", "/holidays/{country}", {"country": "Japan"}),
        ("moving to Germany next month. Can you list the holidays in Germany?", "GET", "/holidays/{country}",
         {"country": "Germany"}),  # a name said twice is one value
        ("the list of holidays in Japan for 2023? Also, give their descriptions in English.", "GET",
         "/holidays/{country}", {"country": "Japan"}),  # of two names, the one said of the holidays
        ("list the managed zones of project acme-prod", "GET", "/dns/v1/projects/{project}/managedZones",
         {"project": "acme-prod"}),  # a handle after its noun
    ],
)
def test_a_quoted_value_fills_the_parameter_it_names(prompt, method, path, expected) -> None:
    assert fill_from_prompt(profile_operation(op(method, path)), prompt_values(prompt)) == expected


def test_a_generic_id_no_path_segment_places_is_the_id_of_what_the_operation_is_named_after() -> None:
    """RPC style: `POST /api/cancelProject?id=` is `/projects/{id}/cancel` said another way."""
    cancel = profile_operation(op("POST", "/api/cancelProject", query_ids=("id",)))
    assert cancel.required_entities == ("project",)
    assert fill_from_prompt(cancel, prompt_values("cancel translation project 5512")) == {"id": "5512"}


@pytest.mark.parametrize(
    ("prompt", "path"),
    [
        ("resize the volume to 100 GB", "/volumes/{id}/actions/resize"),  # a size, not a volume
        ("create a release for v2.1", "/repos/{owner}/{repo}/releases/{release_id}"),  # a version, not an id
        ("email the receipt to ana@example.com", "/v1/invoices/{invoice}/send"),  # an address, not an id
        ("add server 4711 as a target", "/load_balancers/{id}/actions/add_target"),  # names a server, not this one
        ("tell me about the anime Naruto", "/anime/{animeId}"),  # a name never fills an id
        ("compare Japan with Germany", "/holidays/{country}"),  # two names, neither said of the holidays
        ("the top-rated restaurants in Rome", "/restaurants/{restaurantsId}"),  # said of the restaurants, not one
        ("charge this customer 25 euros", "/v1/customers/{customer}"),  # an amount of money, not a customer
        ("pay the invoice 30 dollars", "/v1/invoices/{invoice}/pay"),
    ],
)
def test_values_that_name_something_else_fill_nothing(prompt, path) -> None:
    assert fill_from_prompt(profile_operation(op("POST", path)), prompt_values(prompt)) == {}


def test_the_history_wins_over_a_guess_but_not_over_a_linked_value() -> None:
    pay = profile_operation(op("POST", "/v1/invoices/{invoice}/pay"))
    assert fill_from_prompt(pay, prompt_values("pay it, ref #A77812"), known=frozenset({"invoice"})) == {}
    linked = prompt_values("pay invoice in_9Xk2LmQ0 instead")
    assert fill_from_prompt(pay, linked, known=frozenset({"invoice"})) == {"invoice": "in_9Xk2LmQ0"}


def test_required_query_ids_are_needs_like_path_ids() -> None:
    reviews = profile_operation(op("GET", "/product-reviews", query_ids=("product_id",)))
    assert reviews.required == ("product_id",) and reviews.required_entities == ("product",)
    update = profile_operation(op("PUT", "/updateUserProfile", query_ids=("userId",)))
    said = prompt_values('my access token is "abcd1234" and my user ID is "g-user123." Can you help?')
    assert fill_from_prompt(update, said) == {"userId": "g-user123"}
    role = prompt_values('a role with the ID "role123" for the user with the user ID "user321"')
    assign = profile_operation(op("PUT", "/assignUserRole", query_ids=("userId", "roleId")))
    assert fill_from_prompt(assign, role) == {"roleId": "role123", "userId": "user321"}


def test_a_caller_speaking_for_themselves_holds_their_own_user_id() -> None:
    assert speaks_for_self("generate an avatar for me") and speaks_for_self("update my profile")
    assert not speaks_for_self("generate an avatar for the new member")


def test_an_id_said_to_be_of_another_kind_never_fills_a_parameter() -> None:
    """"order #W8855135" on a spec that has orders and users: the order's id fills an order's parameter only."""
    user, order = profile_operation(op("GET", "/users/{user_id}")), profile_operation(op("GET", "/orders/{order_id}"))
    kinds = frozenset().union(*user.param_words, *order.param_words)
    said = prompt_values("I want to cancel my order #W8855135", kinds)
    assert fill_from_prompt(user, said) == {}
    assert fill_from_prompt(order, said) == {"order_id": "W8855135"}
    # A noun that names no parameter of the spec ("close") leaves an unmistakable id free to fill the one left.
    close = profile_operation(op("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}"))
    assert fill_from_prompt(close, prompt_values("close #61", kinds), known=frozenset({"owner", "repo"})) == {
        "issue_number": "61"
    }


@pytest.mark.parametrize(
    ("description", "filled"),
    [("ID of the series", {"id": "81189"}), ("The series' identifier", {"id": "81189"}), ("", {})],
)
def test_a_value_named_by_what_the_parameters_description_says_it_identifies_fills_it(
    description: str, filled: dict[str, str]
) -> None:
    """`PUT /user/favorites/{id}` holds series (thetvdb): "add series 81189 to my favorites" fills `id` because the
    spec says so, not because of the path's noun ("favorite")."""
    favorite = Operation(id="PUT /user/favorites/{id}", method="PUT", path="/user/favorites/{id}", parameters=(
        Parameter(name="id", location="path", required=True, description=description),))
    profile = profile_operation(favorite)
    said = prompt_values("add series 81189 to my favorites", frozenset().union(*profile.param_words))
    assert fill_from_prompt(profile, said) == filled
