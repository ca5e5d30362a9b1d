"""The hand-written pools and templates ``bench/longconv.py`` draws its conversation from.

Names, places, relatives and items; the fact families (single, distractor, updated, spread,
temporal) with their statements, look-alikes and paraphrased questions; small talk and replies.
Data only, plus the few value drawers the templates name; the generator is in longconv.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

START = 1_704_067_200.0  # 2024-01-01 00:00 UTC

FEMALE = (
    "Alice Carmen Elena Greta Ingrid Keiko Mira Nadia Priya Rosa Uma Wanda Zara Amara Chloe "
    "Esther Gloria Irene Leila Nora Rania Tessa Vera Yara Anika Celia Fiona Hana Julia"
).split()
MALE = (
    "Bruno Dmitri Farid Hugo Jonas Lars Omar Quentin Sven Tomas Viktor Xavier Yusuf Boris Diego "
    "Felix Hassan Jasper Kofi Marco Oscar Pablo Stefan Ulrich Walter Zoltan Bram Dario Emil Ivo"
).split()
NAMES = FEMALE + MALE
SURNAMES = "Brandt Costa Novak Lindqvist Okafor Moreau Tanaka Rossi Kowalski Silva".split()
CITIES = (
    "Lisbon Porto Madrid Valencia Lyon Marseille Turin Naples Vienna Graz Prague Brno Krakow "
    "Gdansk Riga Tallinn Helsinki Bergen Oslo Malmo Aarhus Hamburg Leipzig Munich Zurich Basel "
    "Ghent Utrecht Dublin Cork Glasgow Leeds Bristol Seville Bilbao Bologna Verona Ljubljana "
    "Zagreb Split Sofia Athens Thessaloniki Izmir Tbilisi Yerevan Montreal Quebec Denver Austin"
).split()
COUNTRIES = (
    "Japan Peru Iceland Morocco Vietnam Chile Norway Kenya Mexico Portugal Canada Nepal Greece "
    "Scotland Argentina Croatia Jordan Georgia Mongolia Ireland Brazil Tanzania Finland Laos"
).split()
# the role a fact names -> the words a paraphrased question uses for it ("my {paraphrase}")
ROLES = {
    "sister": "sis",
    "brother": "bro",
    "aunt": "mum's sister",
    "uncle": "dad's brother",
    "cousin": "uncle's kid",
    "niece": "sibling's daughter",
    "nephew": "sibling's son",
    "grandmother": "gran",
    "grandfather": "grandpa",
    "colleague": "coworker",
    "neighbour": "neighbor",
    "flatmate": "roommate",
    "boss": "manager",
    "best friend": "closest pal",
    "childhood friend": "oldest mate",
    "mother-in-law": "partner's mum",
    "father-in-law": "partner's dad",
    "godmother": "godparent",
    "mentor": "adviser at work",
    "classmate": "old study buddy",
}
SHE = {"sister", "aunt", "niece", "grandmother", "mother-in-law", "godmother"}
HE = {"brother", "uncle", "nephew", "grandfather", "father-in-law"}
OLD = {"grandmother", "grandfather", "mother-in-law", "father-in-law", "godmother"}
RELATIVES = "sister brother cousin aunt uncle niece nephew grandmother grandfather".split()
ANIMALS = {"kitten": "cat", "puppy": "dog", "bunny": "rabbit", "parakeet": "bird"}
ITEMS = {
    "drill": "power tool",
    "tent": "camping shelter",
    "ladder": "stepladder",
    "guitar": "six-string",
    "projector": "beamer",
    "suitcase": "travel luggage",
    "kayak": "paddle boat",
    "blender": "smoothie maker",
}
TOPICS = (
    "weather groceries laundry podcast documentary recipe traffic meeting deadline gym garden "
    "playlist museum concert football series novel coffee bakery train bus budget printer "
    "spreadsheet presentation dentist haircut plumber neighbour festival market sunset beach"
).split()


def _date(rng: random.Random) -> str:
    month = rng.choice("January February March April May June July August September".split())
    return f"{month} {rng.randint(1, 28)}"


def _ordinal(rng: random.Random) -> str:
    day = rng.randint(1, 28)
    return f"{day}{'th' if 4 <= day <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')}"


def _password(rng: random.Random) -> str:
    words = "purple otter maple comet lantern pebble falcon cobalt".split()
    return f"{rng.choice(words)}-{rng.choice(words)}-{rng.randint(10, 99)}"


Pool = Sequence[str] | Callable[[random.Random], str]
POOLS: dict[str, Pool] = {
    "city": CITIES,
    "weekday": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split(),
    "month": "October November December January February March".split(),
    "color": "red blue green silver black white yellow orange".split(),
    "car": "Volvo Skoda Toyota Mazda Fiat Renault Subaru Kia Peugeot Honda".split(),
    "young": list(ANIMALS),
    "item": list(ITEMS),
    "pet": "Biscuit Pepper Mochi Ziggy Noodle Olive Pickles Waffles Sprout Juniper Tofu".split(),
    "baby": "Ada Lina Maja Ines Clara Sofia Frida Liv Mila Ella Noa Elif Thea Luz".split(),
    "food": "shellfish peanuts sesame kiwi mustard celery walnuts buckwheat".split(),
    "lang": "Greek Finnish Polish Dutch Hungarian Turkish Welsh Romanian".split(),
    "fear": "heights spiders snakes thunderstorms clowns needles crowds moths".split(),
    "team": "Benfica Celtic Ajax Napoli Galatasaray Feyenoord Rapid Sparta".split(),
    "goal": ["sailboat", "new camera", "trip to Patagonia", "electric bike", "vintage piano"],
    "nick": "Sparky Professor Beanpole Rocket Tiny Duckling Whiz Pebbles".split(),
    "veg": "tomatoes chillies courgettes peas lettuce radishes beans".split(),
    "instr": "drums bass trumpet violin saxophone keyboard".split(),
    "book": ["Middlemarch", "Dune", "Stoner", "Pedro Paramo", "The Leopard", "Solaris"],
    "place": ["salsa night", "train station", "friend's wedding", "climbing gym", "book fair"],
    "blood": ["O negative", "A positive", "B negative", "AB positive", "O positive"],
    "film": ["Amelie", "Stalker", "Spirited Away", "The Big Lebowski", "Cinema Paradiso"],
    "lucky": "3 4 7 9 13 21".split(),
    "dish": ["lamb tagine", "mushroom risotto", "roast chicken", "seafood paella"],
    "hour": "5:30 5:45 6:00 6:15 6:45 7:00".split(),
    "job": ["a nurse", "a sound engineer", "a data analyst", "a pastry chef", "an architect"]
    + ["a paramedic", "a translator", "a tax adviser", "a park ranger", "a copywriter", "a pilot"],
    "company": "Brightwell Norrland Tessaro Quillfield Maplewood Orbis Halvard Kestrel".split(),
    "task": ["the house move", "painting the kitchen", "fixing the garden fence"]
    + ["assembling a wardrobe", "a birthday party", "a job application", "repairing a bicycle"],
    "act": "pottery salsa fencing climbing cello chess sailing yoga judo tango archery".split(),
    "injury": ["a broken leg", "a bad concussion", "a torn ligament", "a dislocated shoulder"],
    "street": ["Linden Lane", "Mill Road", "Harbour Street", "Chestnut Avenue", "Quarry Hill"],
    "band": ["Velvet Harbour", "Northern Static", "The Lantern Club", "Glass Orchard"],
    "venue": ["Roundhouse", "Old Tram Depot", "Harbour Hall", "Blue Note"],
    "restaurant": ["Casa Lucia", "The Copper Pot", "Osteria Verde", "Maison Blanche"],
    "subject": ["bookkeeping", "Italian cooking", "web design", "photography", "woodwork"],
    "lead": ["Guess what,", "Big news:", "Can't believe it,", "Small milestone:", "Well,"],
    "when": ["last weekend", "yesterday", "a few days ago", "over the holidays"],
    "date": _date,
    "day": _ordinal,
    "pw": _password,
    "euros": lambda rng: str(rng.randrange(600, 1800, 25)),
    "cost": lambda rng: str(rng.randrange(300, 2500, 50)),
    "bay": lambda rng: str(rng.randint(1, 240)),
    "nights": lambda rng: str(rng.randint(3, 12)),
    "km": lambda rng: rng.choice(["5", "10", "15"]),
    "size": lambda rng: str(rng.randint(36, 46)),
}
FRESH = {"pet", "baby", "item", "nick", "book"}  # each value is used once per conversation
DERIVED: dict[str, tuple[str, Callable[[str], str]]] = {
    "first": ("name", lambda name: name.split()[0]),
    "rolep": ("role", ROLES.__getitem__),
    "kind": ("young", ANIMALS.__getitem__),
    "itemp": ("item", ITEMS.__getitem__),
}


@dataclass(frozen=True, slots=True)
class _Family:
    """Templates for one question: statements told in order, (paraphrase, one-word) questions."""

    statements: tuple[str, ...]
    questions: tuple[str, str]
    distractors: tuple[str, ...] = ()
    reuse: bool = False  # may be asked again, about another person or item
    group: str = ""  # families sharing a group share their role and first-name keys
    young: bool = False  # the person is no grandparent, parent-in-law or godparent


def _f(
    statements: str | tuple[str, ...],
    q: str,
    q1: str,
    *d: str,
    reuse: bool = False,
    group: str = "",
    young: bool = False,
) -> _Family:
    told = (statements,) if isinstance(statements, str) else statements
    return _Family(told, (q, q1), d, reuse, group, young)


SINGLE = [
    _f("We adopted a {young} and named it {pet}.", "What is our new {kind} called?",
       "What is our {young} called?", "My {role2} {name2} adopted a {young} called {pet2}."),
    _f("The doctor confirmed that I am allergic to {food}.",
       "Is there any food I have to avoid for health reasons?", "What am I allergic to?",
       "{name2} is allergic to {food2}, so I cook without it when {first2} visits."),
    _f("My birthday is on {date}.", "On which day do I turn a year older?",
       "When is my birthday?", "{first2}'s birthday is on {date2}, I still need a present."),
    _f("I was born in a little village outside {city}.", "Where do I originally come from?",
       "Which village am I from?", "{name2} was born in {city2} and never left."),
    _f("I grew up speaking {lang} at home.", "What was my mother tongue as a child?",
       "Which language was spoken in my childhood home?", "{name2} grew up speaking {lang2}."),
    _f("I have been terrified of {fear} since I was a kid.", "What scares me more than anything?",
       "What am I terrified of?", "{first2} is scared of {fear2}, which is funny for an adult."),
    _f("I take my coffee with oat milk and no sugar.", "How do I like my morning brew?",
       "How do I like my coffee?", "{first2} drinks coffee black with two sugars."),
    _f("I support {team} and never miss a match.", "Which club do I cheer for?",
       "Which club do I support?", "{first2} is a die-hard {team2} fan."),
    _f("I cycle to work along the canal every morning.", "How do I get to the office?",
       "How do I get to work?", "{first2} takes the train to work every morning."),
    _f("I'm saving up for a {goal}.", "What am I putting money aside to buy?",
       "What am I saving for?", "{first2} is saving up for a {goal2}."),
    _f("At school everyone called me {nick}.", "What was my nickname as a kid?",
       "What was my school nickname?", "{first2}'s nickname at school was {nick2}."),
    _f("I stopped eating meat three years ago.", "Do I follow any special diet?",
       "Which food do I not eat?", "{first2} went vegan last month and keeps talking about it."),
    _f("I wear size {size} shoes.", "How big are my feet in EU numbers?", "What shoes fit me?",
       "{first2} wears size {size2} and always struggles to find boots."),
    _f("This year I am growing {veg} on the balcony.", "What vegetables am I cultivating?",
       "What is on my balcony?", "{first2} grows {veg2} in the allotment."),
    _f("I played the {instr} in a band as a teenager.", "What music did I make when I was young?",
       "Which instrument did I play?", "{first2} played the {instr2} in the school orchestra."),
    _f("My favourite novel is {book}, I reread it every summer.",
       "Which book do I keep going back to?", "What is my favourite book?",
       "{first2} says the best novel ever written is {book2}."),
    _f("My partner {name} and I met at a {place}.", "Where did I first get to know my other half?",
       "Where did I meet my partner?", "{name2} and {name3} met at a {place2}."),
    _f("My favourite colour has always been {color}.", "Which shade do I like best?",
       "What colour do I like best?", "{first2}'s favourite colour is {color2}."),
    _f("I'm an early riser, up at {hour} every day.", "What time does my alarm go off?",
       "When am I up?", "{first2} sleeps until {hour2} on weekdays."),
    _f("My blood type is {blood}.", "Which group am I for transfusions?",
       "What is my blood group?", "{first2} has blood type {blood2}, the rare one."),
    _f("I'm left-handed, which makes scissors a nightmare.", "Do I write with my right?",
       "Which hand do I write with?", "{first2} is left-handed and always sits at the end."),
    _f("My favourite film is {film}, I have seen it a dozen times.",
       "Which movie could I watch over and over?", "Which film do I love most?",
       "{first2} thinks {film2} is the greatest film ever made."),
    _f("I volunteer at the animal shelter on weekends.",
       "Where do I help out for free on Saturdays and Sundays?", "Where do I volunteer?",
       "{first2} volunteers at the food bank."),
    _f("I can't stand coriander, it tastes like soap to me.", "Which herb do I hate?",
       "What herb tastes bad to me?", "{first2} puts coriander on everything."),
    _f("My grandmother taught me to knit when I was seven.",
       "Who showed me how to make scarves with yarn as a kid?", "Who got me knitting?",
       "{first2} learned to knit from videos last winter."),
    _f("I have a scar on my chin from falling off a swing.", "How did I get the mark on my face?",
       "Where is my scar?", "{first2} has a scar on the knee from football."),
    _f("I keep the spare key under the blue flowerpot.",
       "Where do I hide a backup for the front door?", "Where is my hidden key?",
       "{first2} leaves a key with the neighbours."),
    _f("I'm colour-blind, I mix up red and green.", "Do I have any problem with my eyesight?",
       "Which colours do I confuse?", "{first2} is short-sighted and loses glasses constantly."),
    _f("My lucky number is {lucky}.", "Which digit brings me good fortune?",
       "Which number do I consider fortunate?", "{first2} swears by the number {lucky2}."),
    _f("I have a season ticket for the opera.", "What do I hold a yearly pass for?",
       "Which ticket do I hold all year?", "{first2} has a season ticket for the football."),
]  # fmt: skip

DISTRACTOR = [
    _f("My {role} {name} adopted a {young} called {pet}.",
       "What did my {rolep} name the new {kind}?", "What name did {first} give the {kind}?",
       "My {role2} {name2} adopted a {young} called {pet2}.",
       "We nearly adopted a {young} called {pet3}, but the shelter gave it to another family."),
    _f("My {role} {name} just had a baby girl called {baby}.",
       "What is my {rolep}'s newborn daughter's name?", "What is the name of {first}'s daughter?",
       "My {role2} {name2} just had a baby boy called {baby2}.",
       "{first} keeps sending me photos of the nursery.", young=True),
    _f("My {role} {name} started a new job as {job}.",
       "What does my {rolep} do for a living now?", "What does {first} do for a living now?",
       "My {role2} {name2} started a new job as {job2}.",
       "{first} used to work as {job3} but hated it."),
    _f("My {role} {name} is getting married in {city} on {date}.",
       "Where is my {rolep}'s wedding taking place?", "Where is {first}'s wedding?",
       "My {role2} {name2} is getting married in {city2} on {date2}."),
    _f("My {role} {name} is allergic to {food}.", "What must my {rolep} never eat?",
       "What must {first} never eat?", "My {role2} {name2} is allergic to {food2}.",
       "{first} loves {food3} more than anything."),
    _f("My {role} {name} bought a house in {city}.", "Where did my {rolep} purchase a home?",
       "Where did {first} purchase a home?", "My {role2} {name2} bought a house in {city2}.",
       "{first} rented a flat in {city3} for years.", group="place"),
    _f("I promised my {role} {name} that I would help with {task} on {date}.",
       "What did I agree to do for my {rolep}?", "What did I agree to do for {first}?",
       "I promised my {role2} {name2} that I would help with {task2} on {date2}."),
    _f("I lent {name} my {item}.", "Who has my {itemp} at the moment?", "Who borrowed my {item}?",
       "I lent {name2} my {item2}.", "{name3} lent me a {item} once, ages ago."),
    _f("My {role} {name} is in hospital with {injury}.", "What injury does my {rolep} have?",
       "What injury does {first} have?", "My {role2} {name2} is in hospital with {injury2}."),
]  # fmt: skip
DISTRACTOR = [replace(f, reuse=True) for f in DISTRACTOR]

UPDATED = [
    _f(("My {role} {name} just moved to {city} for a new job.",
        "{first}, my {role}, moved again and now lives in {city2}.",
        "Update on {first}: another move, this time to {city3}."),
       "Where is my {rolep} based these days?", "Which city is {first} in these days?",
       reuse=True, group="place"),
    _f(("I finally bought a car, a {color} {car}.",
        "I sold the old car and got a {color2} {car2} instead.",
        "Traded in again, and now I have a {color3} {car3}."),
       "What am I driving at the moment?", "Which car do I own right now?",
       "My very first car was a {color4} {car4} that broke down every week."),
    _f(("The new wifi password is {pw}.", "I changed the wifi password, it is {pw2} now.",
        "Wifi password changed once more: {pw3}."),
       "What is the code to get online at home?", "What is the current wifi code?"),
    _f(("My dentist appointment is on {date}.", "The dentist moved my appointment to {date2}.",
        "Rescheduled the dentist once more, it is on {date3} now."),
       "When do I need to get my teeth checked?", "When do I see the dentist?"),
    _f(("Our rent is {euros} euros a month.",
        "The landlord raised the rent, we pay {euros2} euros now.",
        "Rent went up again, to {euros3} euros."),
       "How much does our flat cost us each month?", "What is our rent at the moment?"),
    _f(("I started a new job as {job} at {company}.",
        "I switched jobs: I am now {job2} at {company2}.",
        "New role again, {job3} at {company3} this time."),
       "Where am I employed at the moment?", "What is my job these days?"),
    _f(("My {act} class is on {weekday} evenings.", "The {act} class moved to {weekday2} evenings.",
        "They moved {act} again, it is on {weekday3} evenings now."),
       "Which night of the week do I have my hobby lesson?", "Which night do I do {act}?"),
    _f(("My parking space at work is number {bay}.",
        "They reassigned parking, my space is number {bay2} now."),
       "Which bay do I use in the company garage?", "Which parking bay is mine?"),
]  # fmt: skip

SPREAD = [
    _f(("I finally booked my summer holiday.",
        "The flight leaves on {weekday} the {day}, early in the morning.",
        "The destination is {city}, a first for me."),
       "Where am I going on vacation, and what day do I depart?", "Where is my summer trip to?",
       "{name2} is flying to {city2} on {weekday2}.",
       "Last year's holiday in {city3} was a washout."),
    _f(("I got two tickets for the {band} concert.", "It is at the {venue} on {date}.",
        "{name} is coming with me."),
       "Which show am I attending, where, and with whom?", "Who is joining me at the concert?",
       "{name2} saw {band} live last year and loved it."),
    _f(("I reserved a table for our anniversary.",
        "It is at {restaurant}, the place by the harbour.",
        "We are going at eight o'clock on {date}."),
       "Where and when are we celebrating being together another year?",
       "Where is our anniversary dinner?",
       "{first2} celebrated an anniversary at {restaurant2} last month."),
    _f(("I have an interview for a job as {job}.", "It is at the {company} office in {city}.",
        "They want me there on {date} at ten."),
       "Which employer is seeing me, and when?", "When is my interview?",
       "{first2} has an interview at {company2} next week."),
    _f(("We found a new apartment.", "It is on {street}, third floor, with a balcony.",
        "The movers come on {date}."),
       "What is our next address, and when do we relocate?", "When are the movers booked?",
       "{first2} moved to {street2} last year."),
    _f(("I enrolled in an evening class.", "It is a {subject} course at the community college.",
        "The first session is on {date}."),
       "What am I studying after work, and from when?", "What subject is my class?",
       "{first2} teaches a {subject2} course on weekends."),
    _f(("The mechanic called about the car.",
        "The gearbox needs replacing, it will cost {cost} euros.",
        "I can pick it up on {weekday}."),
       "What is wrong with my vehicle, what is the price of the fix, and when is it ready?",
       "What did the mechanic say?", "{first2}'s car needed new brakes, {cost2} euros."),
    _f(("The hospital gave me a date for the knee operation.", "The slot they offered is {date}.",
        "Afterwards I will need crutches for six weeks."),
       "When is my joint surgery, and how long will I be on walking aids?",
       "When is my knee surgery?", "My {role2} {name2} had a hip operation on {date2}."),
    _f(("My parents are coming to stay.", "They arrive on {date}.",
        "They will be here for {nights} nights."),
       "When will mum and dad visit, and for how long?", "When do my parents land?",
       "{first2}'s parents are visiting in {month}."),
    _f(("I signed up for a charity run.", "It is {km} kilometres along the coast.",
        "Race day is {date}."),
       "How far is the fundraising event I am taking part in, and when?",
       "When is the charity event?",
       "{first2} is running {km2} kilometres for charity in {month}."),
    _f(("I ordered a new sofa.", "It is dark green velvet, {cost} euros.",
        "Delivery is on {date}."),
       "What furniture is coming, what did I pay, and when does it arrive?",
       "When does the sofa arrive?", "{first2} bought a second-hand sofa for {cost2} euros."),
    _f(("We are planning a weekend in {city}.", "We found a cabin near the lake for it.",
        "{name} is driving us there on {date}."),
       "Where are we going for a short break, where are we staying, and who gives us a lift?",
       "Who is taking us to the lake?", "{first2} spent a weekend in {city2} and hated it."),
    _f(("My passport expires soon, so I applied for a new one.",
        "The appointment at the consulate is on {date}.",
        "I need to bring two photos and {cost} euros."),
       "When do I go to renew my travel document, and what should I take along?",
       "When is my passport renewal?", "{first2} lost a passport in {city2} last year."),
    _f(("I am hosting Sunday lunch for the family.", "The main course will be {dish}.",
        "{name} is bringing dessert."),
       "What am I cooking when relatives come over, and who handles the sweet course?",
       "What is on the menu for Sunday?", "{first2} makes the best {dish2} I know."),
]  # fmt: skip

# (what I did, the same told of someone else, paraphrased question, one-word question,
#  the same event on another day or "")
EVENTS = [
    ("went skydiving for the first time", "went skydiving for the first time",
     "When did I jump out of a plane?", "When did I go skydiving?",
     "The skydiving jump I booked got cancelled today because of the wind."),
    ("ran my first half marathon", "ran a first half marathon",
     "When did I complete a 21 km race?", "When did I run a marathon?",
     "I signed up for a half marathon in the autumn, training starts now."),
    ("passed my driving test", "passed the driving test",
     "When did I get my licence to be behind the wheel?", "When did I get my driving licence?",
     "I failed my driving test today, the examiner was strict."),
    ("got promoted to team lead", "got promoted to team lead",
     "When did I move up to managing people at work?", "When was my promotion?",
     "The promotion round was postponed today, so no team lead title yet."),
    ("planted an apple tree in the garden", "planted an apple tree in the garden",
     "When did I put a fruit sapling in the ground at home?", "When did the apple sapling go in?",
     ""),
    ("broke my wrist skating", "broke a wrist skating",
     "When did I fracture a bone on the ice?", "When did I hurt my wrist?", ""),
    ("signed the lease for the new studio", "signed a lease on a studio",
     "When did I commit to renting that workspace?", "When did I get the studio?", ""),
    ("finished my thesis draft", "finished a thesis draft",
     "When did I complete a first version of my dissertation?", "When was the thesis written up?",
     "My supervisor sent the thesis draft back today, covered in red ink."),
    ("got my first tattoo", "got a first tattoo", "When did I get inked?",
     "When did I get the tattoo?", ""),
    ("saw the northern lights", "saw the northern lights", "When did I witness the aurora?",
     "When did I see the lights in the sky?",
     "We drove out of town hoping for the northern lights, but it was cloudy."),
    ("quit smoking", "quit smoking", "When did I give up cigarettes?", "When did I stop smoking?",
     "I tried to quit smoking today and lasted until lunch."),
    ("joined the choir", "joined a choir", "When did I start singing with a group?",
     "When did the choir start for me?", ""),
    ("had my wisdom teeth removed", "had wisdom teeth removed", "When did I have dental surgery?",
     "When did I have the teeth operation?", ""),
    ("baked my first loaf of sourdough", "baked a first sourdough loaf",
     "When did I make bread with a starter?", "When did I make sourdough?", ""),
    ("met my favourite author at a book signing", "met a favourite author at a signing",
     "When did I shake hands with the novelist I admire?", "When did I meet the author?", ""),
    ("sold my old motorbike", "sold an old motorbike", "When did I get rid of the two-wheeler?",
     "When did the motorbike go?",
     "A guy came to look at my old motorbike today but did not buy it."),
    ("won the office chess tournament", "won the office chess tournament",
     "When did I come top in the board game contest at work?", "When did I win at chess?",
     "I was knocked out of the office chess tournament in the first round today."),
    ("moved into the flat by the river", "moved into a flat by the river",
     "When did I relocate to the apartment near the water?", "Since when do I live by the river?",
     ""),
    ("started learning Portuguese", "started learning Portuguese",
     "When did I begin lessons in the language of Brazil?", "Since when do I study Portuguese?",
     ""),
    ("gave a talk at a conference", "gave a talk at a conference",
     "When did I present on stage in front of an audience?",
     "When was my conference presentation?", "My conference talk got rejected today."),
    ("got engaged", "got engaged", "When did I say yes to marrying my partner?",
     "When did I get engaged?", ""),
    ("got my braces off", "got braces off", "When did the metal come off my teeth?",
     "When were my braces removed?", ""),
    ("donated blood for the first time", "donated blood",
     "When did I become a donor at the transfusion centre?", "When did I give blood?", ""),
    ("learned to swim properly", "learned to swim", "When did I get comfortable in deep water?",
     "When did I master swimming?", ""),
    ("visited the Alhambra", "visited the Alhambra", "When did I tour the Moorish palace?",
     "When did I see the Alhambra?", ""),
    ("finished reading War and Peace", "finished reading War and Peace",
     "When did I get through the whole Tolstoy?", "When did I get through the Tolstoy war epic?",
     ""),
    ("paid off my student loan", "paid off a student loan",
     "When did I clear my university debt?", "When did I clear my student debt?", ""),
    ("climbed Kilimanjaro", "climbed Kilimanjaro",
     "When did I reach the summit of Africa's highest mountain?", "When did I do Kilimanjaro?",
     "The tour company cancelled my Kilimanjaro trip today, so that is postponed."),
    ("had my first flying lesson", "had a first flying lesson",
     "When did I take the controls of a small aircraft?", "When did I start flying?", ""),
    ("got my first pair of glasses", "got a first pair of glasses",
     "When did I start wearing spectacles?", "When did I get glasses?", ""),
]  # fmt: skip
TEMPORAL = [
    _f(f"{{lead}} today I {mine}!", q, q1, f"My {{role2}} {{name2}} {theirs} {{when}}.",
       f"{{first3}} {theirs} {{when3}}, apparently.", *([own] if own else []))
    for mine, theirs, q, q1, own in EVENTS
]  # fmt: skip

FAMILIES = {
    "single": SINGLE,
    "distractor": DISTRACTOR,
    "updated": UPDATED,
    "spread": SPREAD,
    "temporal": TEMPORAL,
}
WEIGHTS = {"single": 26, "distractor": 20, "updated": 16, "spread": 13, "temporal": 25}
GAPS = {"spread": (5, 40), "updated": (40, 300)}  # turns between a family's statements

SMALL_TALK = [
    "The {t} today was a bit of a mess, but I managed somehow.",
    "I spent the morning on the {t} and then had lunch with {n}.",
    "{n} from work recommended a {t} about {c}, have you heard of it?",
    "Do you have any tips for keeping a {t} under control?",
    "I walked {k} steps today, mostly to the {t} and back.",
    "My {r} called to chat about the {t}; nothing special.",
    "Saw a {a} near the {t} this afternoon, so cute.",
    "I keep thinking about visiting {c} some day, the photos of the {t} look great.",
    "We watched a film set in {c} last night, the {t} scenes were beautiful.",
    "Quick question: how long should I boil eggs for a salad?",
    "I had {k} emails waiting after the {t}, what a day.",
    "{n} and I argued about the {t} again, it's becoming a running joke.",
    "Can you suggest a name for a {t} group chat?",
    "I'm tired, the {t} took way longer than planned.",
    "Remind me why people like {t} so much? I don't get it.",
]
TOPICAL = [  # small talk in the questions' vocabulary
    "A plane flew so low over the {t} today that {n} and I stopped to stare.",
    "{n} showed me photos of a new {a}, everyone seems to be getting pets.",
    "My teeth felt sensitive after the coffee this morning, is that normal?",
    "{n} says the coffee machine at the office is broken again.",
    "{n} asked what I do for a living and I gave a very long answer.",
    "{n} cheers for a club I had never heard of.",
    "{n} wants a vacation in {c} but cannot find cheap flights.",
    "We talked about weddings at lunch, {n} thinks they are far too expensive.",
    "The train to {c} was delayed again, so I was late for the {t}.",
    "There was a newborn at the {t} today, so tiny.",
    "{n} wants to learn the language they speak in {c}.",
    "Finding a parking bay near the {t} was impossible today.",
    "The internet at home was down for an hour this morning.",
    "My feet hurt after the long walk to the {t}.",
    "{n} keeps sending me music from when we were young.",
    "How much does a flat in {c} cost per month, roughly?",
    "I dreamt I was on stage in front of an audience, very strange.",
    "{n} asked which night of the week works for dinner.",
    "Do you know a good recipe for bread? {n} asked me and I had no idea.",
    "My {r} wants to know what I would like as a present this year.",
    "{n} got a new job in {c}, or so I heard.",
    "{n} said the weather in {c} is perfect for a holiday right now.",
    "What is a good gift for someone who just moved house?",
    "Someone at the {t} was talking about skydiving, no thank you.",
    "{n} is thinking about getting a tattoo, I said to wait a week.",
    "A friend of {n}'s is training for a race, I get tired just hearing about it.",
    "{n} asked me for pet name ideas, I said something food related is always cute.",
    "Is it true that allergies can show up later in life? {n} thinks so.",
    "{n} forgot my birthday last year and still apologises for it.",
    "People keep asking where I am from because of my accent, it is funny.",
    "{n} wants to raise the kids speaking two languages at home.",
    "What is the best way to get over being scared of something?",
    "I tried a new coffee place near the {t}, too bitter for me.",
    "{n} invited me to a football match in {c}, I might go.",
    "The roadworks on my way to the office are driving me mad.",
    "I should really put more money aside each month, the {t} ate my budget.",
    "{n} still calls me by a silly name from years ago.",
    "I read that eating less meat is good for the planet, {n} agrees.",
    "I need new shoes, my old ones are falling apart after the {t}.",
    "The plants on the windowsill are not doing great, too little sun.",
    "{n} dragged me to a jazz gig, the trumpet solo was amazing.",
    "Can you recommend a novel for a long train ride to {c}?",
    "{n} and their other half are celebrating ten years together.",
    "My alarm did not go off this morning and I nearly missed the {t}.",
    "There is a blood drive at the {t} next week, {n} is organising it.",
    "Scissors for lefties exist, apparently, {n} told me today.",
    "We watched an old film at the {t}, {n} cried at the end.",
    "{n} asked if I want to help out at the food bank some Saturday.",
    "Why does coriander taste so different to different people?",
    "{n} locked themselves out of the flat again and had to call a locksmith.",
    "Is a yearly pass for the museum in {c} worth it?",
    "{n} asked if I can lend them a few tools for the weekend.",
    "The wifi at the {t} was so slow I gave up.",
    "My gums are a bit sore, maybe I should book a check-up at some point.",
    "Landlords in {c} are asking crazy prices, {n} says.",
    "{n} keeps talking about a surgery date, I hope it goes well.",
    "The mechanic near the {t} is supposed to be honest and cheap.",
]
REPLIES = [
    "That sounds like quite a day. Taking short breaks can make these things easier.",
    "Nice! Small routines like that add up over time.",
    "I haven't got a strong opinion, but many people enjoy it for the atmosphere.",
    "A simple trick is to plan the next step the evening before.",
    "Good to hear. Let me know if you want ideas for the weekend.",
    "That's a fun detail. Would you like a few suggestions related to it?",
    "Interesting! It is worth writing down what worked, for next time.",
    "Sure. Around nine to ten minutes usually works well for hard-boiled eggs.",
    "Understandable. Maybe something lighter this evening would help you recharge.",
    "Noted. If it keeps happening, a short checklist might help.",
]
LEADS = ["Hi again.", "Morning!", "Quick update.", "Oh, one more thing.", "Long day here.", "So."]
TAILS = ["Anyway, how is your day going?", "Just wanted to tell someone.", "Crazy, right?"]
