"""Everyday questions for the real-text suite: activities a person asks an assistant about, each
asked in four ways. Eval prompts use activities that no training prompt mentions."""

FORMS = ("How do I {}?", "What are some tips to {}?", "What should a beginner know before trying to {}?",
         "Can you explain how to {}?")

TRAIN_ACTIVITIES = (
    "bake bread at home", "learn to swim as an adult", "start running", "save money on groceries",
    "fall asleep faster", "make a budget", "learn a new language", "grow tomatoes on a balcony",
    "write a cover letter", "prepare for a job interview", "keep a houseplant alive", "train a puppy",
    "cook rice on the stove", "make friends in a new city", "stop procrastinating", "study for an exam",
    "change a flat tire", "clean a cast iron pan", "start a vegetable garden", "meditate",
    "learn to play the guitar", "write a short story", "organize a small closet", "brew good coffee",
    "plan a road trip", "take better photos with a phone", "negotiate a salary", "run a meeting",
    "give a good presentation", "pack for a long flight", "teach a child to ride a bike", "make pizza dough",
    "fix a leaky faucet", "paint a room", "start journaling", "learn to draw", "reduce screen time",
    "choose a laptop", "back up my computer", "make a simple website", "learn basic chess strategy",
    "cut back on sugar", "make a cheap healthy lunch", "stay focused while working from home",
    "apologize to a friend", "host a dinner party", "keep a conversation going", "start lifting weights",
    "stretch after a workout", "read more books", "improve my handwriting", "care for a cat",
    "wash a wool sweater", "remove a coffee stain", "memorize a speech", "prepare for a marathon",
)
EVAL_ACTIVITIES = (
    "make homemade soup", "learn to type faster", "choose a good running shoe", "set up a fish tank",
    "write a thank-you note", "sharpen a kitchen knife", "start a podcast", "plan a birthday party",
)


def questions(activities) -> list[str]:
    return [form.format(a) for a in activities for form in FORMS]
