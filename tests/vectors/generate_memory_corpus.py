"""Writes tests/vectors/memory_corpus.json: 300 memories written like real notes, and 40 questions.

Each question is answered by one memory (``answer``: its index) and shares few words with it (a
paraphrase: "Where is the spare key?" against "Left the extra house key under the blue flowerpot"),
so a keyword score alone misses many. Ten of the forty keep one rare word of their answer (a name,
a place, a term: "When does Luna need her next injection?"), as people's questions do; thirty share
no word that is not a stop word or a common one. The other 260 memories are distractors on the same topics,
made from fixed phrase lists (no randomness: the file is the same on every run).
``age_days`` is how old a memory is when a test puts it.

Run: python tests/vectors/generate_memory_corpus.py
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

PAIRS: list[tuple[str, str, str]] = [  # (kind, memory, question)
    (
        "note",
        "Left the extra house key under the blue flowerpot by the back door.",
        "Where did I hide the spare key to my home?",
    ),
    (
        "health",
        "Dr. Okafor said my blood pressure was 128 over 82 at the checkup on Tuesday.",
        "What did the physician measure at my last medical appointment?",
    ),
    (
        "car",
        "Changed the engine oil and the filter at 84,200 km; next service due at 94,000.",
        "When does the vehicle need its next maintenance?",
    ),
    (
        "recipe",
        "Grandma's pancakes: two eggs, a cup of flour, a cup of milk, a pinch of salt, rest the batter ten minutes.",
        "How do I make the breakfast crepes my grandmother taught me?",
    ),
    (
        "work",
        "The quarterly report for the board is due on the 14th; Maria collects the sales figures.",
        "When must the board get the company results summary?",
    ),
    (
        "garden",
        "Planted tomato seedlings along the south fence; water them every second evening.",
        "How often should I irrigate the vegetables near the boundary wall?",
    ),
    (
        "travel",
        "Booked the train to Lisbon, coach 7 seat 42, departing 08:15 from platform 3.",
        "Which carriage and place do I have on the railway trip to Portugal?",
    ),
    (
        "pet",
        "Luna's vaccination booster is due in March; the vet is on Harbour Street.",
        "When does Luna need her next injection at the animal clinic?",
    ),
    (
        "finance",
        "Paid the electricity bill of 63 euros by bank transfer on the 2nd.",
        "How much was the electricity invoice and how was it settled?",
    ),
    (
        "home",
        "The boiler pressure drops below 1 bar in winter; top it up with the grey valve under the sink.",
        "How do I fix the heating system losing pressure?",
    ),
    (
        "network",
        "The router admin password is on a sticker inside the hallway cupboard, not on the box.",
        "Where can I find the login for the wifi gateway settings?",
    ),
    (
        "shard",
        "Holder 10.0.0.7 served corrupted bytes twice during the audit; its shards were moved to other nodes.",
        "Which storage peer returned damaged data during verification?",
    ),
    (
        "ledger",
        "A transfer of 500 Shells from Ana to Ben was confirmed by four of five holders within 40 ms.",
        "How quickly did Ana's payment to Ben get accepted?",
    ),
    (
        "monitor",
        "The crono cell's refused-message counter jumped from 3 to 900 after midnight; a flood from one key.",
        "Which cell saw a sudden spike in rejected traffic overnight?",
    ),
    (
        "birthday",
        "Tomás turns 9 on the 22nd of June; he wants a telescope and loves the planets.",
        "What gift would Tomás like this year?",
    ),
    (
        "book",
        "Finished reading the novel about the lighthouse keeper; the ending with the storm made me cry.",
        "Which story did I complete recently that moved me to tears?",
    ),
    (
        "music",
        "Learned the first part of Clair de Lune on the piano; the left hand arpeggios are still slow.",
        "What Debussy piece am I practising on the keyboard?",
    ),
    (
        "sport",
        "Ran 10 kilometres along the river in 52 minutes; knee felt fine afterwards.",
        "How long did my jog by the water take?",
    ),
    (
        "work",
        "Moved the weekly standup with the design team to Thursday at 10 because of the holiday.",
        "When is the regular team meeting with designers now?",
    ),
    (
        "home",
        "The washing machine leaks when the drum is overloaded; never more than 6 kg.",
        "Why does the laundry appliance drip water on the floor?",
    ),
    (
        "note",
        "Gave my neighbour Priya the ladder; she returns it after painting her fence.",
        "Who borrowed my stepladder and why?",
    ),
    (
        "health",
        "Allergic reaction to penicillin as a child: hives and swelling. Tell every doctor.",
        "Which antibiotic must I avoid?",
    ),
    (
        "recipe",
        "For the lentil soup add cumin and smoked paprika before the stock, then simmer 25 minutes.",
        "Which spices go into the lentil stew and when?",
    ),
    (
        "travel",
        "Passport expires in August next year; renew it before booking the Japan trip.",
        "When does my travel document run out?",
    ),
    (
        "finance",
        "The car insurance renews on 1 October; last year's premium was 412 euros.",
        "How much did I pay to cover the vehicle, and when is it renewed?",
    ),
    (
        "garden",
        "Aphids on the roses again; sprayed them with soapy water, ladybirds would help.",
        "What pests attacked my flowers and how did I treat them?",
    ),
    (
        "network",
        "The stick's node joined the tree through the relay at the café because the NAT blocked inbound.",
        "How did my USB node connect when the firewall stopped incoming connections?",
    ),
    (
        "mail",
        "Sent the contract draft to Jonas over the encrypted mail; he replied that clause 4 needs work.",
        "What did my colleague say about the agreement I sent him?",
    ),
    (
        "kids",
        "School trip to the science museum on Friday; pack a lunch and 5 euros for the gift shop.",
        "What does my child need for the museum outing at the end of the week?",
    ),
    (
        "home",
        "The smoke alarm in the bedroom chirps: it needs a 9-volt battery.",
        "Why is the fire detector beeping and what does it need?",
    ),
    (
        "work",
        "Promised to review Sam's pull request about the DStream receiver before Wednesday.",
        "Which DStream code change did I agree to check, and by when?",
    ),
    (
        "car",
        "Front left tyre loses air slowly; the garage found a nail and patched it.",
        "What was wrong with the wheel that kept going flat?",
    ),
    (
        "pet",
        "The dog gets one cup of dry food in the morning and half a cup at night, no chicken bones.",
        "How much should I feed the puppy and what must he not eat?",
    ),
    (
        "note",
        "The Wi-Fi at grandma's flat is called Rosebud and the code is written on her fridge.",
        "How do I get online when I visit grandma?",
    ),
    (
        "exchange",
        "Placed a sell order of 2,000 Shells at 0.8 Doge each on the exchange; half filled by noon.",
        "How much of my offer to trade tokens for dogecoin went through?",
    ),
    (
        "health",
        "Started taking vitamin D, one tablet every morning with breakfast, for three months.",
        "Which supplement am I on and how often?",
    ),
    (
        "book",
        "Lent my copy of the astronomy atlas to Eva; she will bring it back at the reading club.",
        "Who has my book about stars?",
    ),
    (
        "travel",
        "The hotel in Kyoto is near the station; check-in after 3 pm, breakfast included.",
        "When can we enter our room at the Kyoto accommodation?",
    ),
    (
        "finance",
        "Rent goes up to 940 per month from January; the landlord sent the letter on the 5th.",
        "How much will I pay for the apartment next year?",
    ),
    (
        "music",
        "The band rehearses in the garage every Sunday at five; I bring the amplifier cable.",
        "When do we practise with the group, and what do I carry?",
    ),
]

TOPICS = {
    "note": ["the hallway lamp", "the spare umbrella", "the library card", "the bike lock", "the old phone charger"],
    "health": ["my dentist visit", "the eye test", "the flu shot", "the physio session", "my sleep tracker"],
    "car": ["the windscreen wipers", "the parking permit", "the car wash", "the brake pads", "the number plate light"],
    "recipe": ["the banana bread", "the tomato sauce", "the risotto", "the apple crumble", "the curry paste"],
    "work": ["the budget spreadsheet", "the client call", "the hiring plan", "the office move", "the release notes"],
    "garden": ["the compost heap", "the hedge", "the herb bed", "the lawn mower", "the rain barrel"],
    "travel": ["the ferry tickets", "the airport parking", "the rental car", "the city map", "the museum pass"],
    "pet": ["the hamster cage", "the fish tank filter", "the cat flap", "the dog leash", "the bird feeder"],
    "finance": [
        "the phone contract",
        "the savings account",
        "the tax return",
        "the gym membership",
        "the streaming plan",
    ],
    "home": ["the kitchen tap", "the attic window", "the doorbell", "the radiator in the study", "the shower drain"],
    "network": [
        "the mesh repeater",
        "the printer's address",
        "the backup drive",
        "the conduit page",
        "the tree's root node",
    ],
}
EVENTS = [
    "Checked {t} this morning and it looks fine for now.",
    "Need to sort out {t} before the weekend, remind me on Friday.",
    "Talked to Leo about {t}; he suggests waiting until next month.",
    "Spent twenty minutes on {t}, still not finished, continue tomorrow.",
    "Wrote down the details of {t} in the green notebook.",
    "{T} cost more than expected this time, keep the receipt.",
]


def build() -> dict[str, object]:
    memories = [{"kind": kind, "text": text, "age_days": 1 + (i * 7) % 90} for i, (kind, text, _) in enumerate(PAIRS)]
    questions = [{"q": q, "answer": i} for i, (_, _, q) in enumerate(PAIRS)]
    combos = itertools.product(EVENTS, [(k, t) for k, ts in TOPICS.items() for t in ts])
    for n, (event, (kind, thing)) in enumerate(itertools.islice(combos, 300 - len(memories))):
        text = event.format(t=thing, T=thing[0].upper() + thing[1:])
        memories.append({"kind": kind, "text": text, "age_days": 1 + (n * 11) % 120})
    assert len(memories) == 300
    return {
        "source": "written for BorgUSB's memory tests (tests/vectors/generate_memory_corpus.py)",
        "version": 1,
        "memories": memories,
        "questions": questions,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("memory_corpus.json")
    out.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
