"""Tiny catalogue folders in the H&M and the generic layout, written for the loader tests."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from core.data.catalog import Catalog


HM_HEADER = ("article_id,product_code,prod_name,product_type_name,product_group_name,graphical_appearance_name,"
             "colour_group_name,perceived_colour_value_name,department_name,index_name,index_group_name,"
             "section_name,garment_group_name,detail_desc")


HM_ARTICLES = [
    ("0108775015", "0108775", "Strap top", "Vest top", "Solid", "Black", "Jersey top with narrow straps."),
    ("0108775044", "0108775", "Strap top", "Vest top", "Stripe", "White", ""),
    ("0110065001", "0110065", "OP T-shirt", "Bra", "Check", "Light Pink", ""),
]


HM_TRANSACTIONS = [
    ("2020-01-02", "cust-a", "0108775015", "0.0508"),
    ("2020-01-03", "cust-b", "0108775044", "0.0169"),
    ("2020-02-10", "cust-a", "0110065001", "0.0305"),
]


def article_line(aid, code, name, ptype, pattern, colour, desc, extra: str = "") -> str:
    return (f"{aid},{code},{name},{ptype},Garment Upper body,{pattern},{colour},Dark,Jersey Basic,Ladieswear,"
            f"Ladieswear,Womens Everyday Basics,Jersey Basic,{desc}{extra}")


def photo(path: Path, colour=(200, 30, 40), size=(16, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def write_hm(root: Path, articles=HM_ARTICLES, header: str = HM_HEADER, extra_lines: tuple[str, ...] = (),
             transactions=HM_TRANSACTIONS, tx_lines: tuple[str, ...] = (), photos: bool = True) -> Path:
    """A tiny H&M-layout folder: articles.csv, transactions_train.csv, customers.csv, images/."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [header] + [article_line(*a) for a in articles] + list(extra_lines)
    (root / "articles.csv").write_text("\n".join(lines) + "\n")
    tx = ["t_dat,customer_id,article_id,price,sales_channel_id"]
    tx += [f"{d},{c},{a},{p},2" for d, c, a, p in transactions] + list(tx_lines)
    (root / "transactions_train.csv").write_text("\n".join(tx) + "\n")
    (root / "customers.csv").write_text(
        "customer_id,FN,Active,club_member_status,fashion_news_frequency,age,postal_code\n"
        "cust-a,1,1,ACTIVE,Regularly,24,p1\ncust-b,,,ACTIVE,NONE,51,p2\n")
    if photos:
        for a in articles:
            photo(root / "images" / a[0][:3] / f"{a[0]}.jpg")
    return root


def write_generic(root: Path, items: str, interactions: str | None = None, users: str | None = None,
                  photos: tuple[str, ...] = ("img/a.png", "img/b.jpg")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "items.csv").write_text(items)
    if interactions is not None:
        (root / "interactions.csv").write_text(interactions)
    if users is not None:
        (root / "users.csv").write_text(users)
    for i, p in enumerate(photos):
        photo(root / p, colour=(40 * i, 100, 200))
    return root


GENERIC_ITEMS = ("item_id,title,description,image,colour,pattern,product_type,material\n"
                 "a,Red dress,A summer dress.,img/a.png,red,stripe,dress,cotton\n"
                 "b,,,img/b.jpg,blue,solid,shirt,linen\n")


GENERIC_INTERACTIONS = "user_id,item_id,timestamp\nu1,a,2020-03-01 09:30:00\nu2,b,2020-03-02 10:00:00\nu1,b,\n"


STYLES_HEADER = "item_id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"


STYLES_ITEMS = (STYLES_HEADER + "\n"
                "15970,Men,Apparel,Topwear,Shirt,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n"
                "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Party Blue Jeans\n")


def issue(catalog: Catalog, file: str, words: str):
    """The report issue of ``file`` whose problem contains ``words``; fails the test if there is none."""
    found = [i for i in catalog.report.issues if i.file == file and words in i.problem]
    assert found, f"no issue '{words}' for {file} in:\n{catalog.report.summary()}"
    return found[0]
