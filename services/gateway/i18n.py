"""UI labels and date formatting for the site's first-class languages (kk, ru, en)."""

from __future__ import annotations

from datetime import datetime

LANGUAGES = ("kk", "ru", "en")

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "skip": "Skip to content", "home": "Home", "sections": "Sections", "latest": "Latest news",
        "related": "Related Articles", "newsletter": "Newsletter",
        "newsletter_text": "The day's most important stories, in your inbox every morning.",
        "email": "Email address", "subscribe": "Subscribe", "published": "Published", "updated": "Updated",
        "updated_note": "This article has been updated since it was first published.",
        "min_read": "min read", "listen": "Listen to this article", "search": "Search",
        "search_placeholder": "Search KazPost", "older": "Older stories", "newer": "Latest stories",
        "not_found": "Page not found", "not_found_text": "We could not find that page.",
        "gone": "Article removed", "gone_text": "This article has been withdrawn and is no longer available.",
        "no_results": "No articles matched your search.", "results": "results", "also_reported": "Also reported by", "results_for": "Results for",
        "by": "By", "nothing_yet": "No articles yet.", "signup_thanks": "Thank you. Please check your inbox to confirm your subscription.",
        "signup_invalid": "Please enter a valid email address.", "error": "Something went wrong",
        "confirm_title": "Confirm your subscription",
        "confirm_text": "Press the button to start receiving the newsletter.",
        "confirm_button": "Confirm subscription",
        "confirmed": "Thank you: your subscription is confirmed.",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_text": "Press the button to stop receiving the newsletter.",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed": "You have been unsubscribed. No more newsletters will be sent.",
        "link_invalid": "This link is invalid or has expired. Sign up again to get a new one.",
        "too_many": "Too many requests. Please try again later.",
        "form_origin": "This form can only be sent from this site.",
        "sections_optional": "Sections (optional)",
        "also_in": "Also in:",
        "audio_language": "Read aloud in",
        "duration": "Duration",
    },
    "ru": {
        "skip": "Перейти к содержанию", "home": "Главная", "sections": "Разделы", "latest": "Последние новости",
        "related": "Похожие статьи", "newsletter": "Рассылка",
        "newsletter_text": "Главные новости дня — каждое утро в вашей почте.",
        "email": "Адрес электронной почты", "subscribe": "Подписаться", "published": "Опубликовано", "updated": "Обновлено",
        "updated_note": "Статья была обновлена после первой публикации.",
        "min_read": "мин. чтения", "listen": "Прослушать статью", "search": "Поиск",
        "search_placeholder": "Поиск по KazPost", "older": "Более ранние", "newer": "Последние",
        "not_found": "Страница не найдена", "not_found_text": "Мы не нашли эту страницу.",
        "gone": "Статья удалена", "gone_text": "Эта статья отозвана и больше недоступна.",
        "no_results": "По вашему запросу ничего не найдено.", "results": "результатов", "also_reported": "Об этом также сообщают", "results_for": "Результаты для",
        "by": "Автор:", "nothing_yet": "Статей пока нет.", "signup_thanks": "Спасибо! Проверьте почту, чтобы подтвердить подписку.",
        "signup_invalid": "Введите правильный адрес электронной почты.", "error": "Что-то пошло не так",
        "confirm_title": "Подтвердите подписку",
        "confirm_text": "Нажмите кнопку, чтобы начать получать рассылку.",
        "confirm_button": "Подтвердить подписку",
        "confirmed": "Спасибо! Подписка подтверждена.",
        "unsubscribe_title": "Отписка",
        "unsubscribe_text": "Нажмите кнопку, чтобы больше не получать рассылку.",
        "unsubscribe_button": "Отписаться",
        "unsubscribed": "Вы отписались. Рассылка больше не будет приходить.",
        "link_invalid": "Ссылка недействительна или устарела. Подпишитесь снова, чтобы получить новую.",
        "too_many": "Слишком много запросов. Попробуйте позже.",
        "form_origin": "Эту форму можно отправить только с этого сайта.",
        "sections_optional": "Разделы (необязательно)",
        "also_in": "Читать на:",
        "audio_language": "Озвучено на языке",
        "duration": "Длительность",
    },
    "kk": {
        "skip": "Мазмұнға өту", "home": "Басты бет", "sections": "Айдарлар", "latest": "Соңғы жаңалықтар",
        "related": "Ұқсас мақалалар", "newsletter": "Жаңалықтар таратылымы",
        "newsletter_text": "Күннің басты жаңалықтары — күн сайын таңертең поштаңызда.",
        "email": "Электрондық пошта мекенжайы", "subscribe": "Жазылу", "published": "Жарияланды", "updated": "Жаңартылды",
        "updated_note": "Мақала алғаш жарияланғаннан кейін жаңартылды.",
        "min_read": "мин оқу", "listen": "Мақаланы тыңдау", "search": "Іздеу",
        "search_placeholder": "KazPost бойынша іздеу", "older": "Бұрынғы жаңалықтар", "newer": "Соңғы жаңалықтар",
        "not_found": "Бет табылмады", "not_found_text": "Бұл бет табылмады.",
        "gone": "Мақала алынып тасталды", "gone_text": "Бұл мақала кері қайтарылды және енді қолжетімсіз.",
        "no_results": "Сұрауыңыз бойынша ештеңе табылмады.", "results": "нәтиже", "also_reported": "Бұл туралы тағы хабарлағандар", "results_for": "Іздеу нәтижелері:",
        "by": "Авторы:", "nothing_yet": "Әзірге мақалалар жоқ.", "signup_thanks": "Рақмет! Жазылымды растау үшін поштаңызды тексеріңіз.",
        "signup_invalid": "Дұрыс электрондық пошта мекенжайын енгізіңіз.", "error": "Қате орын алды",
        "confirm_title": "Жазылымды растаңыз",
        "confirm_text": "Таратылымды алу үшін түймені басыңыз.",
        "confirm_button": "Жазылымды растау",
        "confirmed": "Рақмет! Жазылымыңыз расталды.",
        "unsubscribe_title": "Жазылымнан бас тарту",
        "unsubscribe_text": "Таратылымды енді алмау үшін түймені басыңыз.",
        "unsubscribe_button": "Бас тарту",
        "unsubscribed": "Сіз жазылымнан бас тарттыңыз. Таратылым енді жіберілмейді.",
        "link_invalid": "Сілтеме жарамсыз немесе мерзімі өткен. Жаңасын алу үшін қайта жазылыңыз.",
        "too_many": "Сұраулар тым көп. Кейінірек қайталаңыз.",
        "form_origin": "Бұл пішінді тек осы сайттан жіберуге болады.",
        "sections_optional": "Бөлімдер (міндетті емес)",
        "also_in": "Басқа тілде:",
        "audio_language": "Оқылған тілі",
        "duration": "Ұзақтығы",
    },
}

_WEEKDAYS = {
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "ru": ["понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье"],
    "kk": ["дүйсенбі", "сейсенбі", "сәрсенбі", "бейсенбі", "жұма", "сенбі", "жексенбі"],
}
_MONTHS = {
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "ru": ["января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября", "ноября", "декабря"],
    "kk": ["қаңтар", "ақпан", "наурыз", "сәуір", "мамыр", "маусым", "шілде", "тамыз", "қыркүйек", "қазан", "қараша", "желтоқсан"],
}


LANGUAGE_NAMES = {"kk": "қазақ тілі", "ru": "русский", "en": "English"}


def language_name(code: str | None) -> str:
    """A language's own name (how a reader of it would look for it)."""
    return LANGUAGE_NAMES.get(code or "", code or "")


def ui_language(language: str | None, default: str = "en") -> str:
    return language if language in LABELS else default


def labels(language: str | None) -> dict[str, str]:
    return LABELS[ui_language(language)]


def long_date(dt: datetime, language: str) -> str:
    """Masthead date: "Saturday, Apr 20, 2024" / "суббота, 20 апреля 2024" / "20 сәуір 2024, сенбі"."""
    lang = ui_language(language)
    weekday = _WEEKDAYS[lang][dt.weekday()]
    month = _MONTHS[lang][dt.month - 1]
    if lang == "en":
        return f"{weekday}, {month} {dt.day}, {dt.year}"
    if lang == "ru":
        return f"{weekday}, {dt.day} {month} {dt.year}"
    return f"{dt.year} ж. {dt.day} {month}, {weekday}"


def date_time(dt: datetime, language: str) -> str:
    lang = ui_language(language)
    month = _MONTHS[lang][dt.month - 1]
    hm = f"{dt.hour:02d}:{dt.minute:02d} UTC"
    if lang == "en":
        return f"{month} {dt.day}, {dt.year}, {hm}"
    if lang == "ru":
        return f"{dt.day} {month} {dt.year}, {hm}"
    return f"{dt.year} ж. {dt.day} {month}, {hm}"
